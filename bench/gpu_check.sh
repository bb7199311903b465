#!/usr/bin/env bash
# The GPU checks in one command, for a CUDA machine (about 8 minutes on one H200):
#   the kernel tests on the GPU, the kernel benchmark, and Flux's steps and compile suites at --preset gpu,
#   each writing its JSON (with the hardware and versions) under bench/results/, then docs/benchmarks.md.
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# The machine needs torch with CUDA and triton. Where diffusers is not installed and there is no network, put
# its wheels and those of its missing requirements in .whl/ at the checkout's root (pip download --no-deps
# ...): they are installed into a private folder for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
export PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
if ! python3 -c "import diffusers" 2>/dev/null; then
    [ -d .whl ] || { echo "diffusers is not installed and there is no .whl/ folder of wheels" >&2; exit 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fbc-site .whl/*.whl
    export PYTHONPATH=/tmp/fbc-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
python3 -c "import torch, triton, diffusers; print('torch', torch.__version__, 'triton', triton.__version__,
      'diffusers', diffusers.__version__, torch.cuda.get_device_name())"

step() { echo "== $* ($(date +%T))"; }
step "kernel tests on the GPU (compiled kernels, not the interpreter)"
TRITON_INTERPRET=0 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tee "$OUT/gpu-kernel-tests.log"
step "kernel benchmark"
python3 bench/run.py kernel --preset gpu --out "$OUT" --no-progress
step "Flux steps at the gpu preset"
python3 bench/run.py steps --preset gpu --models flux --out "$OUT" --no-progress
step "Flux compile suite at the gpu preset"
python3 bench/run.py compile --preset gpu --models flux --repeats 1 --out "$OUT" --no-progress
step "docs/benchmarks.md from the results"
python3 bench/run.py report
step done
