#!/usr/bin/env bash
# Set up, then run the main job on the default corpus (the book's lyrics, checksum-verified):
# prepare, batches and training of the book's scratch RNN (250 epochs, about a minute on two CPU cores).
# CHARFLOW_DATA_PATH lists folders holding a local copy of jaychou_lyrics.txt.zip (used instead of downloading).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CHARFLOW_DATA_PATH="${CHARFLOW_DATA_PATH:-../shared/data}"
exec .venv/bin/charflow run "$@"
