#!/usr/bin/env bash
# Run the tests: set up what is missing (scripts/setup.sh: quick when .venv is up to date), then
# run pytest: unit tests, every notebook executed, strict nbval, the browser test, the site build.
# Arguments go to pytest (e.g. -m "not notebook", -k fusion). Same as `make test`; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
