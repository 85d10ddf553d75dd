#!/usr/bin/env bash
# Create .venv with exactly the versions in constraints.txt (content keys include library versions, so every
# set-up from this file finds the same cached artifacts). Without an NVIDIA GPU, torch is the CPU build of the
# pinned release, installed first so that nothing pulls the multi-gigabyte CUDA build; with one, pip's build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.charflow-installed
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip
# On this project's machines `pip install torch==X` finds the CPU build on local disk; with a GPU, PyPI's build.
.venv/bin/python -m pip install -q "$(grep '^torch==' constraints.txt)"
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
# numba compiles the UTF-8 loops of vocab and encode once and caches them (3 s): not in the first run's time.
.venv/bin/python -c "import numpy, tasks.utf8; tasks.utf8.count_utf8([numpy.frombuffer(b'a', numpy.uint8)])"
echo "$want" > "$stamp"
