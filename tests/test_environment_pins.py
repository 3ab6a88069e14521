"""environment.yml (for conda users) must pin exactly what pyproject.toml pins."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*-\s+([A-Za-z0-9_.\-]+)==([^\s#]+)\s*$")


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    pins = {}
    for req in reqs:
        name, sep, version = req.partition("==")
        assert sep, f"pyproject.toml: {req!r} is not pinned with == (the course pins a tested set)"
        pins[name.strip().lower()] = version.strip()
    return pins


def environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_environment_yml_agrees_with_pyproject():
    expected, got = pyproject_pins(), environment_pins()
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = {k: (expected[k], got[k]) for k in set(expected) & set(got) if expected[k] != got[k]}
    assert not (missing or extra or differ), (
        "environment.yml disagrees with pyproject.toml: "
        f"missing {missing}, not in pyproject {extra}, versions (pyproject, yml) {differ}")


def test_environment_yml_installs_the_package():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s+-e \.\s*$", text, re.M), "environment.yml must install mmcourse (-e .)"


def test_installed_versions_are_the_pinned_ones():
    """The environment the tests run in is the tested set (catches a stale venv)."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, pinned in pyproject_pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed is None or installed.split("+")[0] != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from the pins (pinned, installed): {wrong}; " \
                      f"re-run `bash scripts/setup.sh`"
