"""mmcourse.figure_audit: the figure rules (title, labelled axes, colour-blind-safe colours)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

import nbformat  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from mmcourse import figure_audit  # noqa: E402
from mmcourse.figure_audit import AuditNotRun, audit_figure, install, read_problems  # noqa: E402
from mmcourse.tools.runner import run_notebook  # noqa: E402
from mmcourse.viz import OKABE_ITO  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _good_line_plot():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2], color=OKABE_ITO[0], label="train")
    ax.plot([0, 1, 2], [2, 1, 0], color="grey", linestyle="--", label="chance")
    ax.set(title="Loss per epoch", xlabel="epoch", ylabel="loss")
    return fig


def test_a_titled_labelled_okabe_ito_figure_passes():
    assert audit_figure(_good_line_plot()) == []


def test_missing_title_and_axis_labels_are_reported():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color=OKABE_ITO[1])
    problems = audit_figure(fig)
    assert any("no title" in p for p in problems)
    assert any("x axis shows numbers but has no label" in p for p in problems)
    assert any("y axis shows numbers but has no label" in p for p in problems)


def test_colours_outside_the_palette_and_unsafe_colour_maps_are_reported():
    fig, (a, b) = plt.subplots(1, 2)
    fig.suptitle("Two panels")
    a.plot([0, 1], [0, 1], color="red")
    a.set(xlabel="x", ylabel="y")
    b.imshow(np.arange(16.0).reshape(4, 4), cmap="jet")
    b.axis("off")
    problems = audit_figure(fig)
    assert any("#ff0000" in p and "Okabe-Ito" in p for p in problems)
    assert any("'jet'" in p for p in problems)


def test_suptitle_shared_labels_and_category_ticks_count():
    fig, axes = plt.subplots(2, 2, sharex=True, sharey=True)
    fig.suptitle("A grid")
    for ax in axes.flat:
        ax.plot([0, 1], [0, 1], color=OKABE_ITO[2])
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("amplitude")
    assert audit_figure(fig) == []
    fig2, ax2 = plt.subplots()
    ax2.bar(["image", "audio", "text"], [0.5, 0.6, 0.55], color=OKABE_ITO[:3])
    ax2.set(title="Accuracy by modality", ylabel="accuracy")
    assert audit_figure(fig2) == []  # category names say what the x axis shows


def test_a_twin_axes_shares_the_title_of_its_twin():
    fig, ax1 = plt.subplots()
    ax1.plot([1, 2, 3], [1.0, 0.5, 0.3], color=OKABE_ITO[0])
    ax1.set(title="Learning curve", xlabel="epoch", ylabel="loss")
    ax2 = ax1.twinx()
    ax2.plot([1, 2, 3], [0.5, 0.7, 0.8], color=OKABE_ITO[1])
    assert any("y axis shows numbers but has no label" in p for p in audit_figure(fig))
    ax2.set_ylabel("accuracy")
    assert audit_figure(fig) == []


def test_images_with_hidden_axes_need_only_a_title():
    fig, axes = plt.subplots(1, 3)
    for ax in axes:
        ax.imshow(np.zeros((4, 4, 3)))
        ax.axis("off")
    assert any("no title" in p for p in audit_figure(fig))
    fig.suptitle("Three samples")
    assert audit_figure(fig) == []


def test_install_records_each_problem_once_and_still_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(FigureCanvasBase, "print_figure", FigureCanvasBase.print_figure)
    log = tmp_path / "audit.jsonl"
    install(log)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="red")
    for _ in range(2):
        fig.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0
    problems = read_problems(log)
    assert problems and all(p["figure"] == "(untitled figure)" for p in problems)
    assert len(problems) == len({p["problem"] for p in problems})  # no duplicates
    _good_line_plot().savefig(tmp_path / "good.png")
    assert len(read_problems(log)) == len(problems)


def test_a_missing_or_empty_log_is_an_error_not_a_pass(tmp_path):
    with pytest.raises(AuditNotRun, match=r"none.jsonl does not exist: no figure was audited"):
        read_problems(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(AuditNotRun, match=r"empty.jsonl is empty.*MMCOURSE_FIGURE_AUDIT"):
        read_problems(tmp_path / "empty.jsonl")
    assert figure_audit.ENV_VAR == "MMCOURSE_FIGURE_AUDIT"


def test_a_log_of_good_figures_records_them_and_has_no_problems(tmp_path, monkeypatch):
    monkeypatch.setattr(FigureCanvasBase, "print_figure", FigureCanvasBase.print_figure)
    log = tmp_path / "audit.jsonl"
    install(log)
    _good_line_plot().savefig(tmp_path / "good.png")
    assert log.read_text().splitlines() == ['{"figure": "Loss per epoch", "problem": null}']
    assert read_problems(log) == []


def test_positive_control_a_bad_figure_in_a_notebook_is_caught(tmp_path, monkeypatch):
    """The whole path the notebook tests rely on: the variable reaches the kernel, importing
    mmcourse installs the audit, the inline backend draws through it, the log names the bad
    figure's problems (and the good figure adds none)."""
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv(figure_audit.ENV_VAR, str(log))
    nb = new_notebook(cells=[new_code_cell(source, metadata={"tags": tags}) for source, tags in [
        ("seed = 0", ["parameters"]),
        ("%matplotlib inline\nimport matplotlib.pyplot as plt\nimport mmcourse\n"
         "from mmcourse.viz import OKABE_ITO", []),
        ("fig, ax = plt.subplots()\nax.plot([0, 1], [0, 1], color='red')\nplt.show()", []),
        ("fig, ax = plt.subplots()\nax.plot([0, 1], [1, 0], color=OKABE_ITO[0])\n"
         "ax.set(title='A good figure', xlabel='epoch', ylabel='loss')\nplt.show()", [])]])
    nb.metadata["kernelspec"] = {"name": "mmcourse", "display_name": "mmcourse", "language": "python"}
    path = tmp_path / "00_bad_figure.ipynb"
    nbformat.write(nb, path)
    result = run_notebook(path, tmp_path / "out.ipynb", timeout=300)
    assert result["status"] == "ok", result["error"]
    problems = read_problems(log)
    assert {p["figure"] for p in problems} == {"(untitled figure)"}
    text = " ".join(p["problem"] for p in problems)
    assert "no title" in text and "x axis shows numbers but has no label" in text
    assert "#ff0000" in text
    assert '"A good figure", "problem": null' in log.read_text()
