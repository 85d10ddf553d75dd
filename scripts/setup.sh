#!/usr/bin/env bash
# Create .venv with everything charflow needs. Without an NVIDIA GPU, the CPU build of torch goes in first
# (pinned, so pip does not pull the multi-gigabyte CUDA build); with one, pip's default CUDA build is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.charflow-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        .venv/bin/python -m pip install -q torch
    else
        .venv/bin/python -m pip install -q "torch==${CHARFLOW_CPU_TORCH:-2.13.0}"
    fi
fi
.venv/bin/python -m pip install -q -e '.[dev]'
echo "$want" > "$stamp"
