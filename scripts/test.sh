#!/usr/bin/env bash
# Set up, lint, type-check, then run the whole test suite (slow tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The MLflow tests' tracking server (`mlflow server`, the full mlflow package) in a venv of its own inside .venv:
# its pyarrow<26 cannot sit beside charflow's pinned pyarrow (in content keys). charflow's client is mlflow-skinny.
stamp=.venv/mlflow-server/.installed
want=$(sha256sum constraints-mlflow-server.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x .venv/mlflow-server/bin/python ] || "${PYTHON:-python3}" -m venv .venv/mlflow-server
    .venv/mlflow-server/bin/python -m pip install -q --upgrade pip
    .venv/mlflow-server/bin/python -m pip install -q -r constraints-mlflow-server.txt
    echo "$want" > "$stamp"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy tasks artifacts
# The slowest tests listed at the end: where the suite's time goes (tests/conftest.py starts the longest first).
exec .venv/bin/python -m pytest --durations=30 "$@"
