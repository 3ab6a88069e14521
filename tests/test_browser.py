"""The course in a real browser: JupyterLab and headless Chromium, as a learner meets it.

A JupyterLab server (course kernel, a temporary copy of the student notebooks, its own settings,
autosave off; see tests/browser_support.py) is driven by Playwright in Debian's Chromium:

* notebook 00: Run > Run All Cells; every code cell runs (Run All goes on past the exercise cells,
  which raise NotSolved and carry the tag ``raises-exception``), the figures appear as images,
  and the only errors are the NotSolved of the exercise cells;
* the Chinese notebook 00 (``zh/``): its title is Chinese, and after its set-up cell the first
  exercise cell's NotSolved speaks Chinese (the kernel finds its language from the notebook's
  folder);
* the fusion explorer (the notebook that calls ``fusion_explorer``, 05): the cells above it run
  (Run > Run All Above Selected Cell), then the explorer cell; the live widgets render (the
  server sets ``MMCOURSE_STATIC_WIDGETS=0``); moving the "sample" slider with the arrow key
  changes the readout, the prediction line and the picture.

Screenshots go to runs/browser/ (printed at the end of each test). Skipped with a reason when
Playwright or Chromium is missing (``scripts/setup.sh`` installs both; as root it installs
Debian's chromium) or when ``MMCOURSE_SKIP_BROWSER=1``. Deselect with ``-m 'not browser'``.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from browser_support import CHROMIUM_ARGS, LabPage, LabServer, find_chromium
from mmcourse.notebook_format import PARAMETERS_TAG, RAISES_TAG, exercise_id, tags

pytestmark = [pytest.mark.browser, pytest.mark.notebook]

if os.environ.get("MMCOURSE_SKIP_BROWSER") == "1":
    pytest.skip("browser test skipped: MMCOURSE_SKIP_BROWSER=1", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser test skipped: Playwright is not installed (pip install -e '.[test]')")
CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip("browser test skipped: no Chromium found (Debian: apt-get install chromium "
                "chromium-driver, which scripts/setup.sh does as root; or set MMCOURSE_CHROMIUM)",
                allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHOTS = REPO_ROOT / "runs" / "browser"
TOUR = "00_setup_and_tour.ipynb"
# Seconds; generous, as the machine may be shared. The explorer's notebook trains the frozen
# course features first when $MMCOURSE_CACHE does not hold them yet (about a minute on 2 cores).
OPEN_TIMEOUT = 120
TOUR_TIMEOUT = 300
EXPLORER_TIMEOUT = 600
# Parameters set in the explorer's notebook: the explorer only needs a trained gated model, and
# the notebook's defaults (15 epochs of 9 fusion models) take about two minutes on 2 cores.
FAST = {"EPOCHS": 2, "E2E_EPOCHS": 1}


def _fast_copy(source: Path, target: Path) -> None:
    """Copy a notebook, adding after its parameters cell one that sets the :data:`FAST`
    parameters it has (as papermill injects parameters), so that it trains for less time."""
    nb = nbformat.read(source, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in tags(cell):
            names = [n for n in FAST if re.search(rf"^{n}\s*=", cell.source, re.M)]
            if names:
                lines = ["# Injected by tests/test_browser.py: shorter training (rendering is "
                         "tested here, not numbers)"]
                lines += [f"{n} = {FAST[n]!r}" for n in names]
                injected = nbformat.v4.new_code_cell("\n".join(lines))
                injected.metadata["tags"] = ["injected-parameters"]
                nb.cells.insert(i + 1, injected)
            break
    nbformat.write(nb, target)


def _explorer_notebook() -> Path:
    """The student notebook that calls fusion_explorer."""
    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and "fusion_explorer(" in c.source for c in nb.cells):
            return path
    raise FileNotFoundError("no notebook in notebooks/ calls fusion_explorer(")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a temporary copy of the notebooks; stopped (kernels included) at
    the end, whatever happens."""
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copy(REPO_ROOT / "notebooks" / TOUR, root / TOUR)
    (root / "zh").mkdir()
    shutil.copy(REPO_ROOT / "notebooks" / "zh" / TOUR, root / "zh" / TOUR)
    explorer = _explorer_notebook()
    _fast_copy(explorer, root / explorer.name)
    env = {"MMCOURSE_STATIC_WIDGETS": "0",   # the live explorer, not its static figure
           "MMCOURSE_PROGRESS": "0"}
    server = LabServer(root, tmp_path_factory.mktemp("lab-home"), env=env)
    server.explorer_name = explorer.name
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab):
    """A fresh page; afterwards it is closed and every kernel of the server shut down."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
        with contextlib.suppress(Exception):   # the server's own stop() retries at the end
            for kernel in lab.api("GET", "/api/kernels"):
                lab.api("DELETE", f"/api/kernels/{kernel['id']}")


@contextlib.contextmanager
def _screenshot_on_failure(page, name: str):
    """On an exception, save what the page showed to runs/browser/failed-<name>.png."""
    try:
        yield
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(SHOTS / f"failed-{name}.png"))
        except Exception:  # noqa: BLE001 - keep the original error
            pass
        raise


def _report(capsys, line: str) -> None:
    """Print a line visibly (not captured): where the screenshots went."""
    with capsys.disabled():
        print(f"\n{line}")


def _errors(path: Path) -> list[tuple[int, str, bool]]:
    """(cell index, ename, cell tagged raises-exception) of every error output of a saved
    notebook."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tagged = RAISES_TAG in tags(cell)
        found += [(i, out.get("ename", "?"), tagged) for out in cell.outputs
                  if out.output_type == "error"]
    return found


def _exercise_cells(path: Path) -> list[int]:
    nb = nbformat.read(path, as_version=4)
    return [i for i, c in enumerate(nb.cells) if exercise_id(c) and "raise NotSolved" in c.source]


def test_tour_runs_all_in_jupyterlab(page, lab, capsys):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _screenshot_on_failure(page, "00"):
        start = time.monotonic()
        nb = LabPage(page, lab, TOUR)
        nb.open(OPEN_TIMEOUT)
        assert nb.state()["kernelName"] == "mmcourse"
        state = nb.run("Run All Cells", TOUR_TIMEOUT)
        not_run = [k for k, c in enumerate(state["cells"]) if c["count"] is None]
        assert not not_run, (
            f"Run All stopped early: code cells {not_run} of {len(state['cells'])} did not run "
            "(an error in a cell without the tag raises-exception?)")

        images = page.locator(".jp-OutputArea-output img")
        assert images.count() >= 6, f"expected the tour's figures, found {images.count()} images"
        first = images.first
        first.scroll_into_view_if_needed()
        assert first.evaluate("img => img.complete && img.naturalWidth > 100")
        first.screenshot(path=str(SHOTS / "00_first_figure.png"))

        nb.save()
        saved = lab.root_dir / TOUR
        exercises = _exercise_cells(saved)
        errors = _errors(saved)
        unexpected = [e for e in errors if not (e[1] == "NotSolved" and e[2])]
        assert not unexpected, f"error outputs other than the exercises' NotSolved: {unexpected}"
        assert sorted(i for i, _, _ in errors) == exercises, (
            f"every exercise cell should raise NotSolved once: cells {exercises}, errors {errors}")
        last_error = page.locator(".jp-OutputArea-output[data-mime-type="
                                  "'application/vnd.jupyter.stderr']").last
        last_error.scroll_into_view_if_needed()
        assert "NotSolved" in last_error.inner_text()
        page.screenshot(path=str(SHOTS / "00_last_exercise.png"))
        _report(capsys, f"browser: notebook 00 ran in JupyterLab in "
                        f"{time.monotonic() - start:.0f} s; screenshots in {SHOTS}")


def test_a_chinese_notebook_reads_and_answers_in_chinese(page, lab, capsys):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _screenshot_on_failure(page, "zh"):
        start = time.monotonic()
        nb = LabPage(page, lab, f"zh/{TOUR}")
        nb.open(OPEN_TIMEOUT)
        title = page.locator(".jp-MarkdownOutput h1").first
        title.wait_for(state="visible", timeout=30_000)
        assert re.search(r"^00 · .*[\u4e00-\u9fff]", title.inner_text()), title.inner_text()
        # the set-up cell (it imports the checks), then the first exercise, as a learner would
        for text in ("from mmcourse.exercises import", "# Exercise 0.4"):
            index = nb.select_code_cell(text)
            state = nb.run("Run Selected Cell and Do not Advance", TOUR_TIMEOUT, upto=index + 1)
            assert state["cells"][index]["count"] is not None, f"the cell with {text!r} did not run"
        cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
        error = cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        error.last.wait_for(state="visible", timeout=30_000)
        shown = cell.locator(".jp-OutputArea").inner_text()
        assert "练习 0.4 尚未完成" in shown, f"the check did not answer in Chinese: {shown[:300]!r}"
        cell.screenshot(path=str(SHOTS / "zh_00_exercise.png"))
        _report(capsys, f"browser: the Chinese notebook 00 opened and its check answered in "
                        f"Chinese in {time.monotonic() - start:.0f} s")


def test_fusion_explorer_widgets_respond(page, lab, capsys):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _screenshot_on_failure(page, "explorer"):
        start = time.monotonic()
        name = lab.explorer_name
        nb = LabPage(page, lab, name)
        nb.open(OPEN_TIMEOUT)
        index = nb.select_code_cell("fusion_explorer(")
        state = nb.run("Run All Above Selected Cell", EXPLORER_TIMEOUT, upto=index)
        not_run = [k for k, c in enumerate(state["cells"][:index]) if c["count"] is None]
        assert not not_run, f"code cells {not_run} above the explorer did not run"
        state = nb.run("Run Selected Cell and Do not Advance", EXPLORER_TIMEOUT, upto=index + 1)
        assert state["cells"][index]["count"] is not None, "the explorer cell did not run"

        cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
        explorer = cell.locator(".jp-OutputArea-output .widget-vbox").first
        explorer.wait_for(state="visible", timeout=60_000)
        slider = cell.locator(".widget-slider",
                              has=page.locator(".widget-label", has_text="sample"))
        assert slider.count() == 1, "the explorer's 'sample' slider is missing"
        readout = slider.locator(".widget-readout")
        summary = cell.locator(".widget-html-content").first
        picture = cell.locator(".widget-image").first
        picture.wait_for(state="visible", timeout=30_000)
        before = (readout.inner_text(), summary.inner_text(), picture.get_attribute("src"))
        assert "prediction:" in before[1], f"no prediction line in the explorer: {before[1]!r}"
        explorer.screenshot(path=str(SHOTS / f"{name[:2]}_explorer_before.png"))

        handle = slider.locator(".noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([el, old]) => el.getAttribute('src') !== old",
            arg=[picture.element_handle(), before[2]], timeout=60_000)
        nb.wait_for(lambda s: s["kernel"] == "idle", 60, "the explorer to redraw")
        after = (readout.inner_text(), summary.inner_text(), picture.get_attribute("src"))
        explorer.screenshot(path=str(SHOTS / f"{name[:2]}_explorer_after.png"))
        assert int(after[0]) == int(before[0]) + 1, (
            f"the slider did not move: {before[0]} -> {after[0]}")
        assert after[1] != before[1], f"the prediction line did not change: {after[1]!r}"
        assert after[2] != before[2], "the picture did not change"

        nb.save()
        saved = lab.root_dir / name
        # an unsolved exercise above the explorer (5.5 sits in section 2) raises NotSolved in a cell
        # tagged raises-exception, and JupyterLab goes on; any other error is a failure
        errors = [e for e in _errors(saved) if e[0] <= nb.notebook_index(index)
                  and not (e[1] == "NotSolved" and e[2])]
        assert not errors, f"error outputs up to the explorer: {errors}"
        _report(capsys, f"browser: the fusion explorer of {name} responded in JupyterLab "
                        f"({time.monotonic() - start:.0f} s); screenshots in {SHOTS}")
