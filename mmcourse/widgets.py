"""An interactive fusion explorer: corrupt one sample, watch the modality weights and the answer.

    explorer = fusion_explorer(model, feats, "test")     # in JupyterLab: sliders and toggles

``model`` is a :class:`~mmcourse.classifier.MultimodalClassifier` over the frozen course
features (``encoders`` all None) whose fusion reports per-sample modality weights:
:class:`~mmcourse.fusion.GatedFusion` or :class:`~mmcourse.fusion.WeightedFusion`
(``last_weights``) or :class:`~mmcourse.fusion.AttentionFusion` (``modality_attention()``).
``feats`` is the :class:`~mmcourse.features.CourseFeatures` the model was trained on; its frozen
encoders turn the corrupted raw sample into features again, so every change goes through the whole
pipeline (the corrupting and the reading are in :mod:`mmcourse.what_if`).

Controls (live version): the sample; per modality a *remove* toggle; the image's Gaussian pixel
noise (sigma 0 to 1 on pixels in [0, 1]) and an occluding grey patch over the object; the share of
a *different* shape's call mixed into the audio; the text as written, or rewritten to be
informative (names the shape), uninformative ("object") or misleading (names a wrong shape).
Display: the corrupted image, its spectrogram and text, a bar chart of the modality weights and
one of the class probabilities, and the prediction against the truth.

Widgets need a live Jupyter kernel with a front end. Without one (a script, CI, a rendered page)
or when asked (``static=True``, or the environment variable ``MMCOURSE_STATIC_WIDGETS=1``), the
explorer draws a static figure instead: the same sample under a few preset corruptions
(:data:`PRESETS`), side by side. ``MMCOURSE_STATIC_WIDGETS=0`` forces the live version. When the
variable is unset, the course runner's headless setting ``MMCOURSE_PROGRESS=0`` (which also turns
progress-bar widgets off) selects the static version too, so executed notebooks store a figure,
never widget state.
"""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch
from matplotlib.figure import Figure

from mmcourse.data.course import MODALITY_NAMES, CourseSplit
from mmcourse.viz import OKABE_ITO, log_mel
from mmcourse.what_if import (TEXT_CHOICES, SampleView, check_model, corrupt_sample,
                              explain_sample)

#: The corruptions of the static version: a name and the keyword arguments of corrupt_sample.
PRESETS: dict[str, dict[str, Any]] = {
    "clean, text informative": {"text": "informative"},
    "text misleading": {"text": "misleading"},
    "audio removed, text misleading": {"text": "misleading", "remove": ("audio",)},
    "audio removed, noisy image, text misleading": {"text": "misleading", "image_noise": 0.5,
                                                    "remove": ("audio",)},
    "only a misleading text": {"text": "misleading", "remove": ("image", "audio")},
}


# ---- drawing -------------------------------------------------------------------------------------

def draw_view(view: SampleView, axes: list, title: str | None = None,
              show_xlabels: bool = True) -> None:
    """Draw one SampleView on five Axes: image, spectrogram, text, modality weights, class
    probabilities."""
    sample = view.sample
    ax_img, ax_spec, ax_text, ax_w, ax_p = axes
    present = sample.present
    ax_img.imshow(sample.images[0].transpose(1, 2, 0))
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title("image" + ("" if present["image"][0] else " (missing)"))
    wave = sample.waveform(0)
    spec = log_mel(wave, sample.sample_rate).numpy()
    seconds = len(wave) / sample.sample_rate
    ax_spec.imshow(spec, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.shape[0]),
                   vmin=-9.3, vmax=4.0)
    ax_spec.set_title("audio (log-mel)" + ("" if present["audio"][0] else " (missing)"))
    ax_spec.set_ylabel("mel band")
    ax_spec.set_xlabel("time (s)" if show_xlabels else "")
    ax_text.axis("off")
    text = sample.texts[0] or "(no text)"
    verdict = "right" if view.prediction == view.label else "wrong"
    ax_text.text(0.0, 0.95, _wrap(f'"{text}"', 30), va="top", fontsize=9, transform=ax_text.transAxes)
    ax_text.text(0.0, 0.25, f"predicted: {view.classes[view.prediction]}\n"
                 f"truth: {view.classes[view.label]} ({verdict})", va="top", fontsize=10,
                 color=OKABE_ITO[2] if verdict == "right" else OKABE_ITO[3],
                 transform=ax_text.transAxes)
    ax_text.set_title(title or "text and answer", fontsize=10 if title else None,
                      fontweight="bold" if title else None)
    names = list(view.weights)
    values = [view.weights[m] for m in names]
    ax_w.bar(names, values, color=[OKABE_ITO[j] for j in range(len(names))])
    for j, v in enumerate(values):
        ax_w.text(j, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
    ax_w.set_ylim(0, 1.1)
    ax_w.set_ylabel("weight")
    ax_w.set_title("modality weights")
    colours = [OKABE_ITO[2] if c == view.label else (OKABE_ITO[3] if c == view.prediction
                                                     else "#999999")
               for c in range(len(view.classes))]
    ax_p.barh(range(len(view.classes)), view.probs, color=colours)
    ax_p.set_yticks(range(len(view.classes)), view.classes, fontsize=8)
    ax_p.invert_yaxis()
    ax_p.set_xlim(0, 1)
    ax_p.set_xlabel("probability" if show_xlabels else "")
    ax_p.set_title("class probabilities")


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def static_explorer(model: torch.nn.Module, feats: Any, split: str | CourseSplit = "test",
                    index: int = 0, presets: Mapping[str, Mapping[str, Any]] | None = None,
                    splits: Mapping[str, CourseSplit] | None = None) -> Figure:
    """The explorer without widgets: one row per preset corruption (default :data:`PRESETS`) of
    sample ``index``, each with the image, spectrogram, text, modality weights and class
    probabilities. Returns the matplotlib Figure (not shown)."""
    data = _split(split, splits)
    presets = dict(PRESETS if presets is None else presets)
    if not presets:
        raise ValueError("presets must name at least one corruption")
    fig = Figure(figsize=(14, 2.6 * len(presets)), layout="constrained")
    axes = fig.subplots(len(presets), 5, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 1.6, 1.5, 1.2, 1.4]})
    for row, (name, kwargs) in enumerate(presets.items()):
        view = explain_sample(model, feats, corrupt_sample(data, index, **kwargs))
        draw_view(view, list(axes[row]), title=name, show_xlabels=row == len(presets) - 1)
    fig.suptitle(f"Fusion explorer (static): sample {index} of the {data.name} split under "
                 f"{len(presets)} corruptions")
    return fig


def _split(split: str | CourseSplit, splits: Mapping[str, CourseSplit] | None) -> CourseSplit:
    if isinstance(split, CourseSplit):
        return split
    if splits is None:
        from mmcourse.data.course import make_course_dataset

        splits = _course_splits(make_course_dataset)
    if split not in splits:
        raise KeyError(f"unknown split {split!r}; have {list(splits)}")
    return splits[split]


_CACHE: dict[str, Any] = {}


def _course_splits(make: Any) -> Mapping[str, CourseSplit]:
    if "splits" not in _CACHE:
        _CACHE["splits"] = make(seed=0, size="small")
    return _CACHE["splits"]


# ---- the live version ----------------------------------------------------------------------------

def live_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel to talk to a front end)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def static_requested() -> bool:
    """Whether the explorer should draw its static version (see the module docstring)."""
    flag = os.environ.get("MMCOURSE_STATIC_WIDGETS", "").strip().lower()
    if flag:
        return flag not in ("0", "false", "no", "off")
    if os.environ.get("MMCOURSE_PROGRESS", "1").strip().lower() in ("0", "false", "no", "off"):
        return True
    return not live_kernel()


class FusionExplorer:
    """The live explorer: widgets in ``controls``, the picture in ``image`` (a PNG), the answer
    in ``summary``; :meth:`update` redraws (called whenever a control changes). ``view`` is the
    current :class:`SampleView`. Display it in a notebook (it is its own widget box)."""

    def __init__(self, model: torch.nn.Module, feats: Any, split: CourseSplit, index: int = 0):
        import ipywidgets as w

        check_model(model)
        self.model, self.feats, self.split = model, feats, split
        layout = w.Layout(width="390px")
        style = {"description_width": "150px"}
        self.controls = {
            "index": w.IntSlider(value=int(index), min=0, max=len(split) - 1,
                                 description="sample", continuous_update=False, layout=layout,
                                 style=style),
            "image_noise": w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                         description="image noise (sigma)",
                                         continuous_update=False, layout=layout, style=style),
            "image_occlusion": w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                             description="image occlusion",
                                             continuous_update=False, layout=layout, style=style),
            "audio_mix": w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.1,
                                       description="other call mixed in",
                                       continuous_update=False, layout=layout, style=style),
            "text": w.Dropdown(options=list(TEXT_CHOICES), value="as written", description="text",
                               layout=layout, style=style),
        }
        for m in MODALITY_NAMES:
            self.controls[f"remove_{m}"] = w.ToggleButton(value=False, description=f"remove {m}",
                                                          icon="times", layout=w.Layout(width="135px"))
        self.summary = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(width="900px"))
        for control in self.controls.values():
            control.observe(self._changed, names="value")
        # the control column keeps its width (labels and slider readouts stay readable); the
        # toggles and the one-line summary take the rest
        sliders = w.VBox([self.controls[k] for k in ("index", "image_noise", "image_occlusion",
                                                     "audio_mix", "text")],
                         layout=w.Layout(flex="0 0 auto", width="410px"))
        toggles = w.HBox([self.controls[f"remove_{m}"] for m in MODALITY_NAMES])
        self.widget = w.VBox([w.HBox([sliders, w.VBox([toggles, self.summary],
                                                      layout=w.Layout(flex="1 1 auto"))]),
                              self.image])
        self.view: SampleView | None = None
        self.update()

    def settings(self) -> dict[str, Any]:
        """The current controls as keyword arguments of :func:`corrupt_sample` (plus index)."""
        c = self.controls
        return {"index": c["index"].value, "image_noise": c["image_noise"].value,
                "image_occlusion": c["image_occlusion"].value, "audio_mix": c["audio_mix"].value,
                "text": c["text"].value,
                "remove": tuple(m for m in MODALITY_NAMES if c[f"remove_{m}"].value)}

    def _changed(self, change: Any = None) -> None:
        self.update()

    def update(self) -> SampleView:
        """Corrupt the sample as the controls say, run the model, redraw; returns the view."""
        kwargs = self.settings()
        index = kwargs.pop("index")
        self.view = explain_sample(self.model, self.feats,
                                   corrupt_sample(self.split, index, **kwargs))
        verdict = "#009E73" if self.view.prediction == self.view.label else "#D55E00"
        self.summary.value = f'<span style="color:{verdict}">{self.view.summary()}</span>'
        fig = Figure(figsize=(13, 2.9), layout="constrained")
        axes = fig.subplots(1, 5, gridspec_kw={"width_ratios": [1, 1.6, 1.5, 1.2, 1.4]})
        draw_view(self.view, list(axes))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        self.image.value = buffer.getvalue()
        return self.view

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def fusion_explorer(model: torch.nn.Module, feats: Any, split: str | CourseSplit = "test",
                    index: int = 0, static: bool | None = None,
                    presets: Mapping[str, Mapping[str, Any]] | None = None,
                    splits: Mapping[str, CourseSplit] | None = None,
                    show: bool = True) -> FusionExplorer | Figure:
    """Explore how corrupting or removing a modality changes the weights and the prediction.

    Args:
        model: a MultimodalClassifier over frozen features with a gated, weighted or attention
            fusion (see the module docstring); feats: the CourseFeatures it was trained on.
        split: a split name (of ``splits``, by default the course dataset of seed 0, size
            "small", as ``course_features`` uses) or a CourseSplit.
        index: the sample to start with.
        static: True for the static figure, False for widgets, None to decide automatically
            (:func:`static_requested`).
        presets: the corruptions of the static figure (default :data:`PRESETS`).
        show: display the result in IPython (the static figure is then closed).

    Returns the :class:`FusionExplorer` (live) or the matplotlib Figure (static).
    """
    data = _split(split, splits)
    if static is None:
        static = static_requested()
    if not static:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            static = True
    if static:
        fig = static_explorer(model, feats, data, index, presets)
        if show and _ipython() is not None:
            from IPython.display import display

            display(fig)
        return fig
    explorer = FusionExplorer(model, feats, data, index)
    if show and _ipython() is not None:
        from IPython.display import display

        display(explorer)
    return explorer


def _ipython() -> Any:
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None
