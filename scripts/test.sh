#!/usr/bin/env bash
# Set up, lint, type-check, then run the whole test suite (slow tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy tasks artifacts
exec .venv/bin/python -m pytest "$@"
