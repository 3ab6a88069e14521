"""Is the course's virtual environment up to date? Run by scripts/setup.sh with the venv's Python.

    .venv/bin/python scripts/env_status.py [EXTRA_PIN ...]

Compares every pin of pyproject.toml (its ``name==version`` strings: the dependencies and the
test extras) and each ``EXTRA_PIN`` given on the command line with what is installed, and checks
that the ``mmcourse`` package was installed from this checkout's current pyproject.toml (the hash
that setup.sh records after each successful install). Prints one line per difference and exits
0 when nothing needs installing, 1 when something does. Standard library only (it runs before
anything is installed), so it works on Python 3.10 without tomllib.
"""
from __future__ import annotations

import hashlib
import re
import sys
from importlib.metadata import distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
STAMP = ROOT / ".venv" / ".mmcourse-pyproject.sha256"
PIN = re.compile(r'"([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*==\s*([^"\s;]+)"')


def normalise(name: str) -> str:
    """Package names compare case-insensitively with ``-``, ``_`` and ``.`` alike (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(extra: list[str]) -> dict[str, str]:
    """``{normalised name: version}`` from pyproject.toml plus ``extra`` ("name==version")."""
    found = {normalise(n): v for n, v in PIN.findall(PYPROJECT.read_text())}
    for item in extra:
        name, sep, version = item.partition("==")
        if not sep or not name or not version:
            sys.exit(f"env_status: expected pins like name==1.2.3, got {item!r}")
        found[normalise(name)] = version
    return found


def pyproject_hash() -> str:
    return hashlib.sha256(PYPROJECT.read_bytes()).hexdigest()


def differences(extra: list[str]) -> list[str]:
    """What differs between the pins and the environment, one readable line each."""
    installed = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(normalise(name), dist.version)
    lines = []
    for name, wanted in sorted(pins(extra).items()):
        have = installed.get(name)
        if have is None:
            lines.append(f"{name}: not installed (pinned {wanted})")
        elif have.split("+")[0] != wanted:  # 2.14.1+cu128 is 2.14.1
            lines.append(f"{name}: {have} installed, pinned {wanted}")
    if "mmcourse" not in installed:
        lines.append("mmcourse: not installed")
    elif not STAMP.exists() or STAMP.read_text().strip() != pyproject_hash():
        lines.append("mmcourse: pyproject.toml changed since the last set-up")
    return lines


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--record":
        STAMP.write_text(pyproject_hash() + "\n")
        return 0
    lines = differences(argv)
    for line in lines:
        print(f"setup:   {line}")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
