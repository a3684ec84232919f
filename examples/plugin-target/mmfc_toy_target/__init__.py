"""An example mmfc target plugin: ``toy``, whole-tensor evaluation through the shared op semantics."""
