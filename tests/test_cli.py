"""Tests for the ``mmcourse`` command (mmcourse/tools/cli.py).

Every subprocess pays for importing torch (a few seconds), so only the behaviours that need the
real console script (exit codes through ``sys.exit``, no traceback on stderr, the installed entry
point) run it; the rest call ``mmcourse.tools.cli.main`` in-process.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcourse.tools.cli import main
from mmcourse.data import course
from mmcourse.data.course import make_course_dataset
from mmcourse.data.store import check_dataset, load_dataset

SCRIPT = Path(sys.executable).parent / ("mmcourse.exe" if os.name == "nt" else "mmcourse")
SUBCOMMANDS = ("data", "student", "run", "refresh", "env")


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MMCOURSE_DEVICE", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The "small" dataset written once by the console script (about 10 s)."""
    out = tmp_path_factory.mktemp("cli") / "small"
    proc = _run("data", "--seed", "7", "--size", "small", "--out", str(out))
    return out, proc


@pytest.fixture()
def tiny_size(monkeypatch):
    """Let the in-process CLI accept ``--size tiny`` (the real presets are too slow for tests)."""
    monkeypatch.setitem(course.SPLIT_SIZES, "tiny", (20, 6, 6))
    return "tiny"


def test_console_script_installed():
    assert SCRIPT.exists(), f"{SCRIPT} missing: is the package installed (pip install -e .)?"


# -- mmcourse data ------------------------------------------------------------------------------

def test_data_small_via_console_script(small_folder):
    out, proc = small_folder
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "seed 7, size small: train 4000, val 1000, test 1000" in proc.stdout
    assert str(out) in proc.stdout and "checksums in manifest.json" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 7 and manifest["size"] == "small"
    assert manifest["splits"] == {"train": 4000, "val": 1000, "test": 1000}


def test_data_small_matches_the_generator(small_folder):
    """What the command wrote is what make_course_dataset makes (checked on the test split,
    which does not depend on the other splits' sizes)."""
    out, _ = small_folder
    loaded = load_dataset(out)
    assert {k: len(v) for k, v in loaded.items()} == {"train": 4000, "val": 1000, "test": 1000}
    expected = make_course_dataset(seed=7, size={"test": 1000})["test"]
    got = loaded["test"]
    for array in ("images", "audio", "audio_lengths", "labels", "attributes", "quality"):
        np.testing.assert_array_equal(getattr(got, array), getattr(expected, array), err_msg=array)
    assert got.texts == expected.texts


def test_data_check_good_folder(small_folder, capsys):
    out, _ = small_folder
    assert main(["data", "--check", str(out)]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.out and str(out) in captured.out
    assert captured.err == ""


def test_data_check_corrupted_via_console_script(tmp_path, tiny_size, capsys):
    out = tmp_path / "ds"
    assert main(["data", "--size", tiny_size, "--out", str(out)]) == 0
    capsys.readouterr()
    path = out / "train" / "audio.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    proc = _run("data", "--check", str(out))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mmcourse data --check:")
    assert "train/audio.npy" in proc.stderr and "corrupted" in proc.stderr
    assert proc.stdout == ""


def test_data_check_missing_folder(tmp_path, capsys):
    assert main(["data", "--check", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "nowhere" in err


def test_data_check_wins_over_out(small_folder, tmp_path, capsys):
    out, _ = small_folder
    assert main(["data", "--check", str(out), "--out", str(tmp_path / "x")]) == 0
    assert not (tmp_path / "x").exists()


def test_data_in_process_writes_a_valid_folder(tmp_path, tiny_size, capsys):
    out = tmp_path / "ds"
    assert main(["data", "--seed", "3", "--size", tiny_size, "--out", str(out)]) == 0
    assert "seed 3, size tiny: train 20, val 6, test 6" in capsys.readouterr().out
    assert "seed 3" in check_dataset(out)


def test_data_overwrite(tmp_path, tiny_size, capsys):
    out = tmp_path / "ds"
    assert main(["data", "--size", tiny_size, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "--seed", "1", "--size", tiny_size, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a dataset" in err and "--overwrite" in err
    assert "seed 0" in check_dataset(out)  # untouched
    assert main(["data", "--seed", "1", "--size", tiny_size, "--out", str(out),
                 "--overwrite"]) == 0
    assert "seed 1" in check_dataset(out)


def test_data_needs_out_or_check(capsys):
    assert main(["data"]) == 2
    captured = capsys.readouterr()
    assert "give --out DIR" in captured.err and "--check DIR" in captured.err
    assert captured.out == ""


def test_data_bad_size_via_console_script(tmp_path):
    out = tmp_path / "ds"
    proc = _run("data", "--size", "huge", "--out", str(out))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "mmcourse data: unknown size 'huge'; expected one of ['small', 'medium', 'large'] "
        "or a mapping like {'train': 1000, 'test': 200}")
    assert not out.exists()


def test_data_bad_seed(tmp_path, capsys):
    assert main(["data", "--seed", "-1", "--out", str(tmp_path / "ds")]) == 2
    assert "seed must be a non-negative integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["data", "--seed", "abc", "--out", str(tmp_path / "ds")])
    assert info.value.code == 2
    assert "invalid int value: 'abc'" in capsys.readouterr().err


# -- mmcourse env -------------------------------------------------------------------------------

def test_env_json_via_console_script():
    proc = _run("env", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert {"python", "packages", "device"} <= set(report)
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "torch" in report["packages"] and "numpy" in report["packages"]
    assert report["device"] == "cpu"  # no GPU on the test machines


def test_python_m_mmcourse_and_the_entry_point_run_the_cli(repo_root):
    """``python -m mmcourse`` works without the console script; pyproject.toml's script entry
    names the same function (the console script runs it once the package is installed)."""
    entry = re.search(r'^mmcourse = "([\w.]+):(\w+)"', (repo_root / "pyproject.toml").read_text(),
                      re.M)
    assert getattr(importlib.import_module(entry.group(1)), entry.group(2)) is main
    env = {k: v for k, v in os.environ.items() if k != "MMCOURSE_DEVICE"}
    proc = subprocess.run([sys.executable, "-m", "mmcourse", "env", "--json"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["device"] == "cpu"


def test_env_text(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("python")
    assert any(line.startswith("torch ") for line in lines)
    assert any(line.startswith("device") and "get_device()" in line for line in lines)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


# -- mmcourse student ---------------------------------------------------------------------------

def test_student_check_in_repo(repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    rc = main(["student", "--check"])  # the notebooks may be mid-edit: 0 or 1, never a crash
    captured = capsys.readouterr()
    assert rc in (0, 1)
    if rc == 0:
        assert "in sync" in captured.out
    else:
        assert captured.err.startswith("mmcourse student") or "out of date" in captured.err
        assert "Traceback" not in captured.err


def test_student_bad_root(tmp_path):
    with pytest.raises(SystemExit, match="has no solutions/ folder"):
        main(["student", "--check", "--root", str(tmp_path)])


# -- mmcourse site -------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, solutions", [([], True), (["--no-solutions"], False)])
def test_site_passes_no_solutions_on(repo_root, tmp_path, monkeypatch, flags, solutions):
    """The build itself is tested in tests/test_site.py; here only what the command asks for."""
    import mmcourse.tools.site as site

    calls = []
    monkeypatch.setattr(site, "build_site", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["site", "--root", str(repo_root), "--out", str(tmp_path), *flags]) == 0
    assert calls == [((repo_root, str(tmp_path)), {"solutions": solutions})]


# -- argument parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mmcourse {command}")
    options = {"data": ("--seed", "--size", "--out", "--overwrite", "--check"),
               "student": ("--check", "--root"), "run": ("--only", "--json", "--solutions"),
               "refresh": ("--only", "--root"), "env": ("--json",)}[command]
    for option in options:
        assert option in out


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


def test_no_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train"])
    assert info.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


# -- bad arguments: one line each, nothing run ----------------------------------------------------

@pytest.fixture()
def nothing_runs(monkeypatch):
    """Fail the test if a notebook would start (the kernel check comes just before)."""
    from mmcourse.tools import runner

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook would have run")

    for name in ("check_kernel", "run_notebook"):
        monkeypatch.setattr(runner, name, refuse)


@pytest.mark.parametrize("command", ["run", "refresh"])
@pytest.mark.parametrize("only", ["", ",", " , "])
def test_an_empty_only_is_rejected(command, only, repo_root, nothing_runs, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--only", only, "--root", str(repo_root)])
    assert str(info.value) == (f"mmcourse {command}: --only is empty (got {only!r}); give "
                               f"notebook numbers or names, e.g. --only 00,03, or leave it out "
                               f"to run them all")


@pytest.mark.parametrize("command, folder", [("run", "notebooks"), ("refresh", "solutions")])
def test_an_unknown_notebook_names_those_that_exist(command, folder, repo_root, nothing_runs,
                                                    capsys):
    assert main([command, "--only", "03,99", "--root", str(repo_root)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"mmcourse {command}: unknown notebook '99': expected a number "
                                   f"like 3 or 03, or a full name; {folder}/ has: "
                                   f"00_setup_and_tour, 01_images")
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""


@pytest.mark.parametrize("timeout", ["0", "-5", "1.5", "abc"])
def test_run_timeout_must_be_a_positive_integer(timeout, repo_root, nothing_runs, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--timeout", timeout, "--root", str(repo_root)])
    assert info.value.code == 2
    assert (f"argument --timeout: expected a positive whole number of seconds, got {timeout!r}"
            in capsys.readouterr().err)


def test_run_unknown_notebook_via_console_script_has_no_traceback(repo_root):
    proc = _run("run", "--only", "99", "--root", str(repo_root))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mmcourse run: unknown notebook '99'")


def test_data_out_that_cannot_be_made_is_one_line(tmp_path, tiny_size, capsys):
    (tmp_path / "file").write_text("")
    assert main(["data", "--size", "tiny", "--out", str(tmp_path / "file" / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmcourse data: ") and str(tmp_path / "file") in err
    assert len(err.strip().splitlines()) == 1


def test_data_out_is_checked_before_the_dataset_is_generated(tmp_path, monkeypatch, capsys):
    import mmcourse.data.course as course

    def never(*args, **kwargs):
        raise AssertionError("generated the dataset before finding --out unusable")

    monkeypatch.setattr(course, "make_course_dataset", never)
    (tmp_path / "file").write_text("")
    assert main(["data", "--out", str(tmp_path / "file" / "ds")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmcourse data: cannot write the dataset to ") and "Traceback" not in err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text("{}")
    assert main(["data", "--out", str(tmp_path / "old")]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
