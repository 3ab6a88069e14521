"""An automatic check of the course's figure rules, run while notebooks execute.

The rules (CONTRIBUTING.md): every figure has a title, its axes are labelled, and its colours come
from the colour-blind-safe Okabe-Ito palette (or greys), with colour maps from a colour-blind-safe
list. :func:`audit_figure` reads a matplotlib figure and returns the broken rules as sentences.

With ``MMCOURSE_FIGURE_AUDIT=/path/to/file.jsonl`` in the environment, ``import mmcourse``
calls :func:`install`: from then on, every figure that is drawn to an image (the inline backend
of a notebook, ``savefig``) is audited first and recorded in that file as JSON lines: one
``{"figure": title, "problem": sentence}`` per problem, or ``{"figure": title, "problem": null}``
for a figure that follows every rule. The notebook itself is never changed or stopped.
tests/test_notebooks.py runs every student notebook this way and fails on any problem, and also
when the log is missing or records no figure (:class:`AuditNotRun`): an audit that did not run
must not pass as an audit that found nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib.colors as mcolors
from matplotlib.axes import Axes
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from mmcourse.viz import OKABE_ITO

ENV_VAR = "MMCOURSE_FIGURE_AUDIT"
SAFE_COLORMAPS = frozenset({
    "viridis", "cividis", "magma", "inferno", "plasma", "gray", "grey", "Greys", "binary",
    "gist_gray", "bone", "Blues", "Oranges", "Purples", "BuPu", "YlGnBu", "PuOr", "RdBu", "BrBG",
    "PRGn"})
"""Colour maps that stay readable with the common colour-vision deficiencies: perceptually
uniform ones, single-hue ramps, and blue-orange / purple-green diverging maps (their ``_r``
versions too)."""
_SAFE_RGB = {mcolors.to_hex(c) for c in OKABE_ITO} | {"#ffffff"}


def _is_safe_colour(colour: Any) -> bool:
    """An Okabe-Ito colour, black, white or a grey (alpha ignored); a fully transparent one."""
    rgba = mcolors.to_rgba(colour)
    if rgba[3] == 0:
        return True
    r, g, b = rgba[:3]
    return mcolors.to_hex(rgba[:3]) in _SAFE_RGB or (abs(r - g) < 0.02 and abs(g - b) < 0.02)


def _cmap_ok(name: str | None) -> bool:
    return name is None or name.removesuffix("_r") in SAFE_COLORMAPS


def _figure_title(fig: Figure) -> str:
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    if sup.strip():
        return sup.strip()
    for ax in fig.axes:
        title = _axes_title(ax)
        if title:
            return title
    return "(untitled figure)"


def _axes_title(ax: Axes) -> str:
    return " ".join(ax.get_title(loc).strip() for loc in ("left", "center", "right")).strip()


def _twins(ax: Axes) -> list[Axes]:
    """Axes drawn on top of ``ax`` with a shared axis (``ax.twinx()``/``twiny()``)."""
    here = ax.get_position().bounds
    siblings = set(ax.get_shared_x_axes().get_siblings(ax)) | set(
        ax.get_shared_y_axes().get_siblings(ax))
    return [o for o in siblings if o is not ax and o.get_position().bounds == here]


def _titled(ax: Axes) -> bool:
    return bool(_axes_title(ax)) or any(_axes_title(t) for t in _twins(ax))


def _has_content(ax: Axes) -> bool:
    """Axes that show data (not a colour bar, not an empty panel)."""
    if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>":
        return False
    return bool(ax.lines or ax.patches or ax.collections or ax.images or ax.texts
                or ax.tables or ax.containers)


def _axis_shows_values(axis) -> bool:
    """True when the axis has visible numeric tick labels (so it needs a name)."""
    if not axis.get_visible():
        return False
    labels = [t.get_text() for t in axis.get_ticklabels() if t.get_visible()]
    labels = [t for t in labels if t.strip()]
    if not labels:
        return False
    numeric = 0
    for text in labels:
        cleaned = text.replace("\u2212", "-").replace("%", "").replace("$", "").strip()
        try:
            float(cleaned)
            numeric += 1
        except ValueError:
            pass
    return numeric == len(labels)  # category names on an axis say what it shows


def _label_somewhere(fig: Figure, ax: Axes, which: str) -> bool:
    """The axis has a label, or the figure has a shared one, or an axes sharing it has one."""
    if (ax.get_xlabel() if which == "x" else ax.get_ylabel()).strip():
        return True
    sup = getattr(fig, "_supxlabel" if which == "x" else "_supylabel", None)
    if sup is not None and sup.get_text().strip():
        return True
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    for other in group.get_siblings(ax):
        if (other.get_xlabel() if which == "x" else other.get_ylabel()).strip():
            return True
    # A grid of panels labels only its outer row/column: accept a label on another panel of
    # the same column (x) or row (y).
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    if spec is not None:
        twins = _twins(ax)
        for other in fig.axes:
            if other in twins:  # a twin shows another quantity on its own axis
                continue
            ospec = other.get_subplotspec() if hasattr(other, "get_subplotspec") else None
            if other is ax or ospec is None or ospec.get_gridspec() is not spec.get_gridspec():
                continue
            same = (ospec.colspan == spec.colspan) if which == "x" else (ospec.rowspan == spec.rowspan)
            label = other.get_xlabel() if which == "x" else other.get_ylabel()
            if same and label.strip():
                return True
    return False


def _colour_problems(ax: Axes) -> list[str]:
    bad: set[str] = set()
    for line in ax.lines:
        for colour in (line.get_color(), line.get_markerfacecolor(), line.get_markeredgecolor()):
            if isinstance(colour, str) and colour in ("none", "auto"):
                continue
            if not _is_safe_colour(colour):
                bad.add(mcolors.to_hex(colour))
    for patch in ax.patches:
        if patch.get_fill() and not _is_safe_colour(patch.get_facecolor()):
            bad.add(mcolors.to_hex(patch.get_facecolor()))
    problems = []
    for coll in ax.collections:
        cmap = coll.get_cmap() if coll.get_array() is not None else None
        if cmap is not None:
            if not _cmap_ok(cmap.name):
                problems.append(f"colour map {cmap.name!r} is not in the colour-blind-safe list")
            continue
        for colour in coll.get_facecolors():
            if not _is_safe_colour(colour):
                bad.add(mcolors.to_hex(colour))
    for image in ax.images:
        if image.get_array() is not None and image.get_array().ndim == 2 \
                and not _cmap_ok(image.get_cmap().name):
            problems.append(f"colour map {image.get_cmap().name!r} is not in the "
                            "colour-blind-safe list")
    if bad:
        problems.append(f"colours {sorted(bad)} are not Okabe-Ito colours or greys "
                        "(use mmcourse.viz.OKABE_ITO)")
    return problems


def audit_figure(fig: Figure) -> list[str]:
    """The figure rules ``fig`` breaks, as sentences (an empty list when it follows them all).

    Input: a matplotlib Figure. Checks: a title (a suptitle, or a title on every axes that shows
    data, a twin axes sharing its twin's title); a name on every axis with numeric tick labels (on that axes, a panel of the same
    row/column, a shared axes, or ``fig.supxlabel``/``supylabel``); colours from Okabe-Ito or
    greys and colour maps from :data:`SAFE_COLORMAPS`.
    """
    axes = [ax for ax in fig.axes if ax.get_visible() and _has_content(ax)]
    if not axes:
        return []
    problems = []
    has_suptitle = bool(getattr(fig, "_suptitle", None) is not None
                        and fig._suptitle.get_text().strip())
    untitled = [i for i, ax in enumerate(axes) if not _titled(ax)]
    if not has_suptitle and untitled:
        where = "the figure" if len(axes) == 1 else f"axes {untitled} of {len(axes)}"
        problems.append(f"no title on {where} (set ax.set_title or fig.suptitle)")
    for i, ax in enumerate(axes):
        name = f"axes {i} ({_axes_title(ax) or 'untitled'})"
        if not ax.axison:
            problems += [f"{name}: {p}" for p in _colour_problems(ax)]
            continue
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if _axis_shows_values(axis) and not _label_somewhere(fig, ax, which):
                problems.append(f"{name}: the {which} axis shows numbers but has no label")
        problems += [f"{name}: {p}" for p in _colour_problems(ax)]
    return problems


_original_print_figure = FigureCanvasBase.print_figure


def install(path: str | os.PathLike) -> None:
    """Audit every figure before it is drawn to an image; append problems to ``path`` (JSON lines).

    Idempotent. The figure is drawn exactly as before; an error inside the audit is recorded as
    a problem rather than raised.
    """
    target = Path(path)
    seen: set[tuple[str, str]] = set()

    def print_figure(self, *args, **kwargs):
        try:
            fig = self.figure
            problems = audit_figure(fig)
            title = _figure_title(fig)
        except Exception as err:  # noqa: BLE001 - the audit must never break a notebook
            problems, title = [f"the figure audit failed: {type(err).__name__}: {err}"], "?"
        new = [(title, p) for p in problems if (title, p) not in seen]
        if new:
            seen.update(new)
            with target.open("a", encoding="utf-8") as fh:
                for t, p in new:
                    fh.write(json.dumps({"figure": t, "problem": p}) + "\n")
        elif not problems:  # a figure that passed: proof that the audit ran
            with target.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"figure": title, "problem": None}) + "\n")
        return _original_print_figure(self, *args, **kwargs)

    print_figure._mmcourse_audit = True  # type: ignore[attr-defined]
    FigureCanvasBase.print_figure = print_figure


class AuditNotRun(RuntimeError):
    """The figure audit was asked for, but its log is missing or records no figure."""


def read_problems(path: str | os.PathLike) -> list[dict[str, str]]:
    """The problems recorded in the audit log ``path``: ``[{"figure": title, "problem": sentence}]``
    (empty when every audited figure followed the rules).

    Raises :class:`AuditNotRun` when ``path`` does not exist or records no figure: the audit was
    not installed (``MMCOURSE_FIGURE_AUDIT`` did not reach the process that drew, or ``mmcourse``
    was never imported there) or no figure was drawn to an image."""
    target = Path(path)
    records = ([json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line]
               if target.exists() else [])
    if not records:
        state = "is empty" if target.exists() else "does not exist"
        raise AuditNotRun(f"the figure audit log {target} {state}: no figure was audited. Was "
                          f"{ENV_VAR} set in the environment of the process that drew, did it "
                          f"import mmcourse, and did it draw a figure (plt.show(), savefig)?")
    return [r for r in records if r.get("problem") is not None]
