"""lit configuration for mmfc's IR tests (``tests/filecheck/**/*.mlir``).

Each ``.mlir`` file holds ``// RUN:`` lines run by lit's internal shell, usually piping ``xdsl-opt`` or
``mmfc opt`` into ``filecheck``. The tools resolve to the virtual environment that runs lit (the
directory of ``sys.executable``), both as substitutions and first on PATH, so a test never picks up
another installation. Temporary files (``%t``) go under the system temp dir, not into the checkout.
"""

import os
import re
import sys
import tempfile

import lit.formats

# `config` is injected by lit.
config.name = "mmfc"  # noqa: F821
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir"]  # noqa: F821
config.test_source_root = os.path.dirname(os.path.abspath(__file__))  # noqa: F821
# One folder per lit run (pytest passes its tmp_path): two suites running at once must not share %t.
config.test_exec_root = os.environ.get("MMFC_LIT_EXEC_ROOT") or tempfile.mkdtemp(prefix="mmfc-lit-")  # noqa: F821

bin_dir = os.path.dirname(os.path.abspath(sys.executable))
config.environment["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])  # noqa: F821
# Keep what the tools need to find their Python packages and a writable home.
for var in ("HOME", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"):
    if var in os.environ:
        config.environment[var] = os.environ[var]  # noqa: F821

# A tool name only when it stands alone as a command word: never inside a path such as
# tests/filecheck/dialects/x.mlir (lit substitutions are regular expressions).
for tool in ("xdsl-opt", "filecheck", "mmfc"):
    path = os.path.join(bin_dir, tool)
    if os.path.exists(path):
        config.substitutions.append(  # noqa: F821
            (rf"(?<![\w./-]){re.escape(tool)}(?![\w./-])", path.replace("\\", "\\\\"))
        )

# `%python`: the interpreter that runs lit (helper scripts beside the tests, e.g. checkpoint makers).
config.substitutions.append(("%python", sys.executable.replace("\\", "\\\\")))  # noqa: F821
