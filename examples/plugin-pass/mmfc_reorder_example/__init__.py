"""An example mmfc pass plugin (see ``docs/plugins.md`` in the mmfc repository).

It provides one pass, ``sort-weight-refs`` (:class:`~mmfc_reorder_example.sort_weight_refs.SortWeightRefs`),
registered under the ``mmfc.passes`` entry-point group in this package's ``pyproject.toml``. Importing
this package imports nothing of the pass: mmfc loads the entry point only when the pass is used or
listed.
"""

__version__ = "0.1.0"
