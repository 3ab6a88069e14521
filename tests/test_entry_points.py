"""The README's two commands: `make course` and `make test`, each setting up what is missing.

Checks that the README, the Makefile, the scripts and CI agree, and that the set-up's environment
check (scripts/env_status.py) notices packages that differ from the pins.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(label: str) -> str:
    """The command in the README's "Two commands" table whose row starts with ``label``."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(f"| **{label}**"):
            return re.findall(r"`([^`]+)`", line)[-1]
    raise AssertionError(f"README.md has no row '| **{label}**' in its table of commands")


def test_readme_names_two_commands():
    assert readme_command("run the course") == "make course"
    assert readme_command("run the tests") == "make test"


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_command("run the tests") in lines, ".ci/run must run the README's test command"


def test_make_targets_set_up_first():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^course:\n\t@bash scripts/course\.sh", makefile, re.M)
    assert re.search(r"^test:\n\t@bash scripts/test\.sh", makefile, re.M)
    for script, runs in (("course.sh", ".venv/bin/mmcourse run"),
                         ("test.sh", ".venv/bin/python -m pytest")):
        text = (ROOT / "scripts" / script).read_text()
        assert text.index("bash scripts/setup.sh") < text.index(runs), script


def env_status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "env_status.py"), *args],
                          capture_output=True, text=True)


def test_env_status_names_a_package_that_differs_from_its_pin():
    result = env_status("pytest==0.0.1", "no-such-package-xyz==1.0")
    assert result.returncode == 1
    assert re.search(r"pytest: \S+ installed, pinned 0\.0\.1", result.stdout), result.stdout
    assert "no-such-package-xyz: not installed (pinned 1.0)" in result.stdout


def test_env_status_accepts_the_installed_pins():
    result = env_status()
    package_lines = [line for line in result.stdout.splitlines() if "mmcourse:" not in line]
    assert package_lines == [], f"the test environment differs from the pins:\n{result.stdout}"


def test_env_status_rejects_a_malformed_pin():
    result = env_status("torch>=2")
    assert result.returncode != 0 and "expected pins like name==1.2.3, got 'torch>=2'" in result.stderr
