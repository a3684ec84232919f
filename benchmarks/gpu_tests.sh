#!/usr/bin/env bash
# Run the whole test suite on the lent GPU machine (python3 there has torch + triton, no xDSL).
# Needs the wheels in .whl/ (xdsl + deps, filecheck, lit; benchmarks/RESULTS.md says which and how).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps .whl/*.whl || exit 1
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch, triton, numpy, xdsl; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
LOG=${OUT:-/tmp}/pytest.log
python3 -m pytest -q -p no:cacheprovider -rs "$@" 2>&1 | tee "$LOG" | tail -40
exit "${PIPESTATUS[0]}"
