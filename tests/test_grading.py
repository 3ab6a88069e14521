"""mmcourse grade: verdicts from the grader's own checks, in a sandbox, failing early.

The notebooks here are tiny (a few cells, no training). Their exercises 98.x are checked by
tests/grading_checks.py, which the grader takes like the course's checks; every one wants 42.
The hostile submissions answer 42 only when their attack worked, so a pass is an unearned pass.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import socket
import tempfile
import types
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mmcourse.tools import CHECKOUT, grading, sandbox
from mmcourse.tools.cli import main as cli_main
from mmcourse.tools.runner import KERNEL_ENV
from mmcourse.tools.grading import (GradingError, check_grade_arguments, find_reference,
                                    format_grades, grade_notebook, grades_csv,
                                    rewrite_exercise_cell)

CHECKS = Path(__file__).with_name("grading_checks.py")
SETUP = "import os, sys, time, socket, subprocess\nfrom mmcourse.exercises import NotSolved, check"
needs_bwrap = pytest.mark.skipif(sandbox.find_bwrap() is None, reason="bubblewrap (bwrap) is not "
                                 "installed (apt-get install bubblewrap): the sandbox cannot run")


def make_submission(path, cells, kernel="mmcourse"):
    nb = new_notebook(cells=[new_markdown_cell("# A submission"), new_code_cell(SETUP), *cells])
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (mmcourse)",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def exercise(number, body):
    return new_code_cell(f"# Exercise 98.{number}\n{body}\ncheck(\"98.{number}\", answer)")


def grade(path, **kwargs):
    kwargs.setdefault("reference", path)
    return grade_notebook(path, check_files=[CHECKS], **kwargs)


def leftover_processes(marker: str) -> list[str]:
    """Each process (not pytest's own) whose command line contains ``marker``: pid, state, parent
    and command line."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "pytest" not in cmdline:
            found.append(sandbox.describe_process(int(proc.name)))
    return [f for f in found if not f.endswith(": gone")]


@pytest.fixture
def scratches(monkeypatch):
    """The scratch folders the grader makes during this test, in order. A sandbox's processes
    all name their scratch folder, so it is what a test looks for after grading: other tests may
    be grading (or running processes named ``mmcourse-grade-...``) at the same moment in another
    test process (pytest-xdist; see tests/conftest.py), and their processes are not this
    grading's leftovers."""
    made = []

    def mkdtemp(*args, **kwargs):
        made.append(tempfile.mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(grading, "tempfile", types.SimpleNamespace(mkdtemp=mkdtemp))
    return made


def leftovers_after_grading(marker: str, result: dict, settle: float = 5.0) -> str:
    """'' when no process naming ``marker`` is left, else what is left and what the grader said.

    The grader returns when none of its sandbox's processes is left (it kills them; see
    sandbox.stop_kernel, tested on its own below), and the kernel tears a PID namespace down
    asynchronously, so a process seen here is looked for again for up to ``settle`` seconds: one
    still there then outlived the grading."""
    import time

    start = time.monotonic()
    first = leftover_processes(marker)
    while (left := leftover_processes(marker)) and time.monotonic() - start < settle:
        time.sleep(0.1)
    if not left:
        return ""
    return (f"right after grading: {first}; after {time.monotonic() - start:.1f} s more: {left}; "
            f"the grader's warnings: {result.get('warnings')}")


# ------------------------------------------------------------------ an honest submission

@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if sandbox.find_bwrap() is None:
        pytest.skip("bubblewrap (bwrap) is not installed (apt-get install bubblewrap)")
    folder = tmp_path_factory.mktemp("grading")
    cells = [
        exercise(1, "answer = 21 * 2"),
        exercise(2, "answer = 21 + 2"),
        new_code_cell('# Exercise 98.3\nraise NotSolved("98.3")\ncheck("98.3", answer)'),
        exercise(4, "answer = 1 / 0"),
        new_code_cell("# Exercise 98.5\nanswer = 42"),
        new_code_cell('print("after the exercises")'),
    ]
    reference = make_submission(folder / "reference.ipynb", [*cells, exercise(6, "answer = 42")])
    submission = make_submission(folder / "student.ipynb", cells)
    return grade(submission, timeout=120, reference=reference), folder


def test_each_exercise_gets_its_outcome(graded):
    result, _ = graded
    assert result["notebook"] == "student.ipynb" and result["error"] is None, result
    assert result["sandboxed"] and result["tampering"] == []
    by_id = {e["id"]: e for e in result["exercises"]}
    assert list(by_id) == ["98.1", "98.2", "98.3", "98.4", "98.5", "98.6"]
    assert by_id["98.1"]["passed"] and "98.1 passed" in by_id["98.1"]["message"]
    assert not by_id["98.2"]["passed"]
    assert "expected double of 21, got 23" in by_id["98.2"]["message"]
    assert "multiply by 2" in by_id["98.2"]["message"]          # the hint reaches the grade
    assert by_id["98.3"]["message"].startswith("not solved yet")
    assert "ZeroDivisionError" in by_id["98.4"]["message"]
    assert "never called check" in by_id["98.5"]["message"]
    assert by_id["98.6"]["message"] == "exercise cell not found in the submission"
    assert sum(e["passed"] for e in result["exercises"]) == 1


def test_table_csv_and_json_formats(graded):
    result, _ = graded
    table = format_grades([result])
    assert "student.ipynb" in table and "FAIL" in table and "1/6 passed" in table
    rows = list(csv.DictReader(io.StringIO(grades_csv([result, result]))))
    assert len(rows) == 12 and rows[0] == {"notebook": "student.ipynb", "exercise": "98.1",
                                           "passed": "true", "message": rows[0]["message"]}
    json.dumps(result)
    warned = dict(result, warnings=["not sandboxed (--no-sandbox): ..."])
    assert "WARNING: not sandboxed" in format_grades([warned])


def test_the_check_call_becomes_an_assignment():
    source = 'x = 1\ncheck("3.1", f(x), k=2, **extra)  # done\nprint(x)'
    assert rewrite_exercise_cell(source, "3.1", "_g") == \
        "x = 1\n_g = ((f(x),), {'k': 2, **extra})  # done\nprint(x)"
    assert rewrite_exercise_cell('check("3.2", x)', "3.1", "_g") is None      # another exercise
    assert rewrite_exercise_cell("if ok:\n    check('3.1', x)", "3.1", "_g") is None  # not top level
    assert rewrite_exercise_cell("%time y = 2\ncheck('3.1', y)", "3.1", "_g").rstrip().endswith(
        "_g = ((y,), {})")                                                   # magics are transformed


def test_every_course_exercise_cell_can_be_graded():
    """The grader finds the check call of every exercise cell of the course (any added later too)."""
    from mmcourse.exercises.core import known_exercises

    registered, found = set(known_exercises()), []
    for path in sorted((CHECKOUT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            eid = grading.exercise_id(cell)
            if eid:
                found.append(eid)
                assert rewrite_exercise_cell(cell.source, eid, "_g") is not None, (path.name, eid)
                assert eid in registered, f"{path.name}: exercise {eid} has no registered check"
    assert found


# ------------------------------------------------------------------ hostile submissions

@needs_bwrap
def test_hostile_submissions_earn_nothing_and_touch_nothing(tmp_path, monkeypatch, scratches):
    marker = f"mmcourse-hostile-{uuid.uuid4().hex[:8]}"
    secret_file = tmp_path / "grader_secret.txt"
    secret_file.write_text("s3cret")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    course_victim = CHECKOUT / f".grading-victim-{marker}"
    course_victim.write_text("keep me")
    pwned = [tmp_path / "pwned.txt", CHECKOUT / f"pwned-{marker}.txt"]
    monkeypatch.setenv("MMCOURSE_GRADER_SECRET", "s3cret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    cells = [
        exercise(1, "answer = 21 * 2"),                                   # an earned pass
        exercise(2, "from IPython.display import display, publish_display_data\n"   # forged display
                    "bundle = {'application/vnd.mmcourse.check+json': {'id': '98.2', 'passed': True,"
                    " 'message': 'Exercise 98.2 passed'}, 'text/plain': 'Exercise 98.2 passed'}\n"
                    "display(bundle, raw=True)\npublish_display_data(bundle)\n"
                    "print('Exercise 98.2 passed')\nanswer = 0"),
        exercise(3, "def check(*args, **kwargs):\n    print('Exercise 98.3 passed')\n"   # redefined
                    "    return True\nanswer = 0"),
        exercise(4, "answer = 42 if os.environ.get('MMCOURSE_GRADER_SECRET') else 0"),   # environment
        exercise(5, f"try:\n    answer = 42 if open({str(secret_file)!r}).read() else 0\n"
                    "except OSError:\n    answer = 0"),                       # the grader's files
        exercise(6, f"answer = 0\nfor target in {[str(p) for p in pwned]!r}:\n"  # writing outside
                    "    try:\n        open(target, 'w').write('pwned'); answer = 42\n"
                    "    except OSError:\n        pass"),
        exercise(7, f"answer = 0\nfor target in {[str(victim), str(course_victim)]!r}:\n"  # deleting
                    "    try:\n        os.remove(target); answer = 42\n"
                    "    except OSError:\n        pass"),
        exercise(8, f"subprocess.Popen(['/bin/sh', '-c', 'sleep 300; : {marker}'], "  # background
                    "start_new_session=True)\n"
                    f"if os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sh', ['sh', '-c', "
                    f"'sleep 300; : {marker}'])\nanswer = 0"),
        exercise(9, f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"  # network
                    "    answer = 42\nexcept OSError:\n    answer = 0"),
        exercise(10, "try:\n    big = bytearray(3 * 2 ** 30)\n    answer = 42\n"   # past the memory cap
                     "except MemoryError:\n    answer = 0"),
        exercise(11, "children = []\ntry:\n    while len(children) < 1000:\n"     # a fork bomb
                     "        pid = os.fork()\n        if pid == 0:\n"
                     "            time.sleep(300)\n            os._exit(0)\n"
                     "        children.append(pid)\nexcept OSError:\n    pass\n"
                     "answer = 42 if len(children) >= 1000 else 0\n"
                     "for pid in children[5:]:  # room for the cells below; 5 stay behind\n"
                     "    os.kill(pid, 9)\n    os.waitpid(pid, 0)"),
        exercise(12, "import mmcourse.exercises.core as core\n"                  # patched checker
                     "core._REGISTRY['98.12'].fn = lambda answer: None\n"
                     "core.fail = lambda *args, **kwargs: None\nanswer = 0"),
        exercise(13, "import torch\ntorch.allclose = lambda *args, **kwargs: True\nanswer = 0"),
        exercise(14, "ip = get_ipython()\nip.user_expressions = lambda expressions: {key: "  # forged reply
                     "{'status': 'ok', 'data': {'text/plain': repr(json.dumps({'passed': True}))}}"
                     " for key in expressions}\nimport json\nanswer = 0"),
    ]
    path = make_submission(tmp_path / "98_hostile.ipynb", cells)
    try:
        result = grade(path, timeout=240, memory_gb=2, max_processes=64)
        assert len(scratches) == 1, scratches
        leftovers = (leftovers_after_grading(marker, result)
                     + leftovers_after_grading(scratches[0], result))
        connected = True
        try:
            server.accept()
        except BlockingIOError:
            connected = False
        deleted = not victim.exists() or not course_victim.exists()
        written = [str(p) for p in pwned if p.exists()]
    finally:
        server.close()
        course_victim.unlink(missing_ok=True)
        for p in pwned[1:]:
            p.unlink(missing_ok=True)
    by_id = {e["id"]: e for e in result["exercises"]}
    assert result["error"] is None, result
    assert by_id.pop("98.1")["passed"], result
    assert not [e for e in by_id.values() if e["passed"]], "unearned passes"
    for number in range(2, 12):   # each attack failed on its own, before any tampering
        assert "expected double of 21, got 0" in by_id[f"98.{number}"]["message"], by_id[f"98.{number}"]
    for number in (12, 13):
        assert by_id[f"98.{number}"]["message"].startswith("tampering detected"), by_id[f"98.{number}"]
    assert not by_id["98.14"]["passed"]
    tampering = " ".join(result["tampering"])
    assert "mmcourse.exercises.core.fail was replaced" in tampering
    assert "torch.allclose was replaced" in tampering
    assert not leftovers, f"processes outlived the grading: {leftovers}"
    assert not connected, "the submission reached a port of the grader's machine"
    assert not deleted and not written, f"the submission changed the grader's files: {written}"
    assert "tampering detected" in format_grades([result])


@needs_bwrap
def test_an_infinite_loop_hits_the_time_limit(tmp_path, scratches):
    path = make_submission(tmp_path / "98_loop.ipynb", [
        exercise(1, "answer = 42"),
        exercise(2, "while True:\n    pass"),
        exercise(3, "answer = 42"),
    ])
    result = grade(path, timeout=10)
    assert "time limit of 10 s" in result["error"], result
    first, second, third = result["exercises"]
    assert first["passed"] and not second["passed"] and not third["passed"]
    assert third["message"].startswith("not run")
    assert result["seconds"] < 60
    assert len(scratches) == 1 and "mmcourse-grade-" in scratches[0], scratches
    leftovers = leftovers_after_grading(scratches[0], result)
    assert not leftovers, leftovers
    assert not [w for w in result["warnings"] if "outlived" in w], result["warnings"]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc (Linux)")
def test_stopping_the_sandbox_waits_until_its_processes_are_gone():
    """The sandbox's init dies after the kernel, asynchronously; the grader returns only when
    every process naming the sandbox's folder is gone (killed after the grace period)."""
    import subprocess
    import sys
    import time

    marker = f"mmcourse-grade-test-{uuid.uuid4().hex[:8]}"
    child = "import sys, time; print('ready', flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", child, marker], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", f"the child process exited: {proc.wait(5)}"
        deadline = time.monotonic() + 5
        while not leftover_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not leftover_processes(marker):  # e.g. a /proc of another pid namespace
            pytest.skip(f"this machine's /proc does not list this test's running child "
                        f"(pid {proc.pid}); the grader's wait has nothing to look at here")
        assert sandbox._wait_until_gone(marker, grace=0.2) == []
        assert not leftover_processes(marker)
        assert proc.wait(5) == -9  # killed, not left behind
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()


@needs_bwrap
def test_a_killed_kernel_is_reported_as_a_dead_kernel(tmp_path):
    path = make_submission(tmp_path / "98_killed.ipynb", [
        exercise(1, "answer = 42"),
        exercise(2, "import signal\nos.kill(os.getpid(), signal.SIGKILL)\nanswer = 42"),
        exercise(3, "answer = 42"),
    ])
    result = grade(path, timeout=120)
    assert result["error"].startswith("the kernel died"), result
    assert "time limit" not in result["error"]
    assert [e["passed"] for e in result["exercises"]] == [True, False, False]
    assert result["exercises"][2]["message"].startswith("not run: the kernel died")


@needs_bwrap
def test_a_flood_of_output_does_not_fill_the_graders_memory(tmp_path):
    """400 MB printed (and displayed) by a cell: the grader drops outputs, its memory stays flat."""
    import subprocess
    import sys

    path = make_submission(tmp_path / "98_flood.ipynb", [
        exercise(1, "chunk = 'x' * 2 ** 20\nfor _ in range(200):\n    print(chunk)\n"
                    "from IPython.display import display\nfor _ in range(200):\n"
                    "    display({'text/plain': chunk}, raw=True)\nanswer = 42"),
        exercise(2, "answer = 42"),
    ])
    script = ("import json, resource, sys\nfrom mmcourse.tools.grading import grade_notebook\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              f"r = grade_notebook({str(path)!r}, reference={str(path)!r}, timeout=300, "
              f"check_files=[{str(CHECKS)!r}])\n"
              "print(json.dumps({'result': r, 'growth_mb': "
              "(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=CHECKOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [e["passed"] for e in report["result"]["exercises"]] == [True, True], report["result"]
    assert report["growth_mb"] < 100, \
        f"the grader's memory grew with the output: {report['growth_mb']:.0f} MB"


@needs_bwrap
def test_cli_grade_json_csv_and_no_kernel_chatter(graded, capfd, monkeypatch):
    _, folder = graded
    out_csv = folder / "grades.csv"
    real = grading.grade_notebook
    monkeypatch.setattr(grading, "grade_notebook",
                        lambda *a, **k: real(*a, check_files=[CHECKS], **k))
    code = cli_main(["grade", str(folder / "student.ipynb"), "--json", "--csv", str(out_csv),
                     "--reference", str(folder / "reference.ipynb"), "--timeout", "120"])
    assert code == 0
    out, err = capfd.readouterr()
    report = json.loads(out)
    assert report["notebook"] == "student.ipynb"
    assert [e["passed"] for e in report["exercises"]] == [True, False, False, False, False, False]
    assert set(report["exercises"][0]) == {"id", "passed", "message"}
    assert out_csv.read_text().startswith("notebook,exercise,passed,message\n")
    assert "without encryption" not in out + err and "Kernel" not in err


# ------------------------------------------------------------------ failing early, keeping results

@pytest.fixture
def fake_grading(monkeypatch):
    """grade_notebook replaced by a recorder (no kernel): the calls, in order."""
    calls = []

    def fake(path, **kwargs):
        calls.append((Path(path).name, kwargs))
        if Path(path).name.startswith("crash"):
            raise KeyboardInterrupt
        return {"notebook": Path(path).name, "exercises": [{"id": "98.1", "passed": True,
                "message": "ok"}], "error": None, "seconds": 1.0, "warnings": []}

    monkeypatch.setattr(grading, "grade_notebook", fake)
    return calls


def test_bad_arguments_fail_before_any_notebook_runs(tmp_path, fake_grading):
    good = make_submission(tmp_path / "98_good.ipynb", [])
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    cases = {
        (str(good), str(tmp_path / "missing.ipynb")): "no notebook at",
        (str(good), str(bad)): "is not a readable notebook",
        (str(good), "--timeout", "0"): "--timeout must be a positive number",
        (str(good), "--timeout", "-1"): "--timeout must be a positive number",
        (str(good), "--timeout", "inf"): "--timeout must be a positive number",
        (str(good), "--timeout", "nan"): "--timeout must be a positive number",
        (str(good), "--csv", str(tmp_path / "no" / "such" / "grades.csv")): "--csv",
        (str(good), "--csv", str(tmp_path)): "--csv",
        (str(good), "--reference", str(tmp_path / "nope.ipynb")): "no notebook at",
        (str(good), "--reference", str(good), "--data", str(tmp_path / "nodata")): "--data",
        (str(tmp_path / "98_good.ipynb"),): "cannot tell which course notebook",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit, match=message.replace("-", r"\-")):
            cli_main(["grade", *args])
    assert fake_grading == [], "a notebook ran although an argument was wrong"


def test_results_are_written_notebook_by_notebook(tmp_path, fake_grading, capsys):
    first = make_submission(tmp_path / "98_first.ipynb", [])
    crash = make_submission(tmp_path / "crash_98.ipynb", [])
    out_csv = tmp_path / "grades.csv"
    with pytest.raises(KeyboardInterrupt):
        cli_main(["grade", str(first), str(crash), "--reference", str(first), "--csv", str(out_csv),
                  "--no-sandbox"])
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["notebook"], r["passed"]) for r in rows] == [("98_first.ipynb", "true")]
    assert "98_first.ipynb" in capsys.readouterr().out
    assert fake_grading[0][1]["sandboxed"] is False


def test_a_class_ends_with_one_summary_line(tmp_path, fake_grading, capsys):
    subs = [make_submission(tmp_path / f"98_student{i}.ipynb", []) for i in range(3)]
    assert cli_main(["grade", *map(str, subs), "--reference", str(subs[0]), "--no-sandbox"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"3 notebooks graded in \d+\.\d min \(\d+ s each on average\): "
                        r"3 passed every exercise, 0 stopped early .*", last), last


def test_a_missing_bwrap_refuses_in_one_line_or_warns_with_no_sandbox(tmp_path, fake_grading,
                                                                      monkeypatch, capsys):
    sub = make_submission(tmp_path / "98_x.ipynb", [])
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    with pytest.raises(SystemExit) as stop:
        cli_main(["grade", str(sub), "--reference", str(sub)])
    assert "bubblewrap (bwrap) is not installed" in str(stop.value)
    assert "\n" not in str(stop.value) and fake_grading == []
    assert cli_main(["grade", str(sub), "--reference", str(sub), "--no-sandbox"]) == 0
    assert "WARNING: --no-sandbox" in capsys.readouterr().err
    assert fake_grading[0][1]["sandboxed"] is False


def test_the_reference_is_chosen_by_the_notebook_number(tmp_path):
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    (root / "notebooks").mkdir()
    for name in ("03_audio.ipynb", "12_more.ipynb"):
        nbformat.write(new_notebook(), root / "solutions" / name)
    nbformat.write(new_notebook(), root / "notebooks" / "04_only_student.ipynb")
    for name, expected in {"bob_03_audio.ipynb": "03_audio", "03_audio (1).ipynb": "03_audio",
                           "2024_12_03_audio.ipynb": "03_audio", "alice-04.ipynb": None,
                           "alice_04_x.ipynb": "04_only_student"}.items():
        if expected is None:
            with pytest.raises(GradingError, match="cannot tell which course notebook"):
                find_reference(tmp_path / name, new_notebook(), root=root)
        else:
            assert find_reference(tmp_path / name, new_notebook(), root=root).stem == expected
    renamed = new_notebook(cells=[new_code_cell('# Exercise 3.1\ncheck("3.1", 1)')])
    assert find_reference(tmp_path / "homework.ipynb", renamed, root=root).stem == "03_audio"
    pairs = check_grade_arguments([str(make_submission(tmp_path / "03_audio_bob.ipynb", []))],
                                  timeout=10, root=root)
    assert pairs[0][1] == root / "solutions" / "03_audio.ipynb"
    for timeout in (0, -1, math.inf, math.nan):
        with pytest.raises(GradingError, match="--timeout"):
            check_grade_arguments([], timeout=timeout, root=root)


@needs_bwrap
def test_a_chinese_notebook_is_graded_against_the_english_reference(tmp_path):
    # a learner's copy of the Chinese solution notebook 00 (the exercises are the English ones)
    submission = tmp_path / "li_00_setup_and_tour.ipynb"
    shutil.copy(CHECKOUT / "solutions" / "zh" / "00_setup_and_tour.ipynb", submission)
    assert find_reference(submission) == CHECKOUT / "solutions" / "00_setup_and_tour.ipynb"
    result = grade_notebook(submission, timeout=300)
    assert result["error"] is None, result["error"]
    ids = [row["id"] for row in result["exercises"]]
    assert sorted(ids) == ["0.1", "0.2", "0.3", "0.4"], ids
    failed = [row for row in result["exercises"] if not row["passed"]]
    assert not failed, failed


def test_the_sandbox_command_hides_the_grader(tmp_path):
    cmd = sandbox.sandbox_prefix("/usr/bin/bwrap", tmp_path, CHECKOUT, "/venv/bin/python",
                                 2 ** 30, 64)
    text = " ".join(cmd)
    assert "--clearenv" in cmd and "--die-with-parent" in cmd and "--unshare-all" in cmd
    assert f"--ro-bind {CHECKOUT} {CHECKOUT}" in text and f"--bind {tmp_path} {tmp_path}" in text
    assert "RLIMIT_NPROC=64" in cmd and f"RLIMIT_DATA={2 ** 30}" in cmd
    env = sandbox.sandbox_env(tmp_path, CHECKOUT, Path("/venv/bin"))
    assert env["HOME"].startswith(str(tmp_path)) and "MMCOURSE_GRADER_SECRET" not in env
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "MMCOURSE_CACHE",
                        "OMP_NUM_THREADS", *KERNEL_ENV}
    root = sandbox.sandbox_prefix("/usr/bin/bwrap", tmp_path, CHECKOUT, "/venv/bin/python",
                                  2 ** 30, 64, as_nobody=True)
    assert "--unshare-net" in root and "--reuid=65534" in root and "--unshare-all" not in root
    assert os.path.isabs(cmd[0])
