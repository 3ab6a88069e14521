#!/usr/bin/env bash
# Run the tests: set up what is missing (scripts/setup.sh: quick when .venv is up to date), then
# run pytest: unit tests, every notebook executed, strict nbval, the browser test, the site build.
# Arguments go to pytest (e.g. -m "not notebook", -k fusion). Same as `make test`; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One test process per core, at most 4 (pytest-xdist): notebooks execute while kernels start, the
# site builds and the browser waits. MMCOURSE_TEST_WORKERS=1 runs everything in one process; an
# argument -n N given to this script wins. Each module's tests stay in one process and the longest
# start first (tests/conftest.py).
workers="${MMCOURSE_TEST_WORKERS:-$(.venv/bin/python -c 'import os; print(min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))')}"
parallel=()
if [ "$workers" -gt 1 ]; then
    parallel=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
fi
exec .venv/bin/python -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
