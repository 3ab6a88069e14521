#!/usr/bin/env bash
# Run the course headless: set up what is missing (scripts/setup.sh: quick when .venv is up to
# date), then execute every notebook on the built-in data and print one row per notebook.
# Arguments go to `mmcourse run` (e.g. --only 00,03, --solutions, --json). Same as `make course`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mmcourse run "$@"
