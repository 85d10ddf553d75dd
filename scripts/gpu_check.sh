#!/usr/bin/env bash
# The GPU checks: the GPU tests, then the GPU benchmark, in well under 10 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh prepare   # here, with the network: the wheels and the corpus into .gpu/
#   bash scripts/gpu_check.sh           # on the GPU machine, from the repo root, with .gpu/ beside it
#
# The GPU machine has Python 3.12 and its own torch, numpy, pandas, pyarrow and pytest, but no pydantic and
# no network: pydantic travels as Python 3.12 wheels. Logs go to $OUT (or .gpu/out).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    set -e
    rm -rf .gpu/wheels && mkdir -p .gpu/wheels
    pins=$(grep -E '^(pydantic|pydantic_core|annotated-types|typing-inspection|typing_extensions)==' constraints.txt)
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/wheels $pins
    cp "${CHARFLOW_SHARED_DATA:-../shared/data}/jaychou_lyrics.txt.zip" .gpu/
    ls -l .gpu .gpu/wheels
    exit 0
fi

OUT=${OUT:-.gpu/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CHARFLOW_SHARED_DATA=$PWD/.gpu CHARFLOW_HOME=/tmp/charflow-gpu-home
if ! python3 -c 'import pydantic' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/gpu-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'

timeout 240 python3 -m pytest -q -p no:cacheprovider tests/tasks/train 2>&1 | tee "$OUT/tests.log"
tests=$?
timeout 300 python3 -m benchmarks.gpu_train --corpus .gpu/jaychou_lyrics.txt.zip 2>&1 | tee "$OUT/benchmark.log"
benchmark=$?
echo "tests rc=$tests, benchmark rc=$benchmark"
[ "$tests" = 0 ] && [ "$benchmark" = 0 ]
