"""An interactive fusion explorer: corrupt one sample, watch the modality weights and the answer.

    explorer = fusion_explorer(model, feats, "test")     # in JupyterLab: sliders and toggles

``model`` is a :class:`~mmcourse.classifier.MultimodalClassifier` over the frozen course
features (``encoders`` all None) whose fusion reports per-sample modality weights:
:class:`~mmcourse.fusion.GatedFusion` or :class:`~mmcourse.fusion.WeightedFusion`
(``last_weights``) or :class:`~mmcourse.fusion.AttentionFusion` (``modality_attention()``).
``feats`` is the :class:`~mmcourse.features.CourseFeatures` the model was trained on; its frozen
encoders turn the corrupted raw sample into features again, so every change goes through the whole
pipeline.

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from mmcourse.data.course import (COLOURS, MODALITY_NAMES, POSITIONS, QUALITY_LEVELS, SIZES,
                                  CourseSplit)
from mmcourse.fusion import AttentionFusion, GatedFusion, WeightedFusion
from mmcourse.viz import OKABE_ITO, log_mel

#: Text rewrites the explorer offers ("as written" keeps the sample's own text).
TEXT_CHOICES = ("as written", "informative", "uninformative", "misleading")
#: The corruptions of the static version: a name and the keyword arguments of corrupt_sample.
PRESETS: dict[str, dict[str, Any]] = {
    "clean, text informative": {"text": "informative"},
    "text misleading": {"text": "misleading"},
    "audio removed, text misleading": {"text": "misleading", "remove": ("audio",)},
    "audio removed, noisy image, text misleading": {"text": "misleading", "image_noise": 0.5,
                                                    "remove": ("audio",)},
    "only a misleading text": {"text": "misleading", "remove": ("image", "audio")},
}
_SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}
_ANCHORS = np.array([[9.5, 9.5], [22.5, 9.5], [9.5, 22.5], [22.5, 22.5], [16.0, 16.0]])
_MISSING_AUDIO = int(0.3 * 8000)


# ---- corrupting one sample -----------------------------------------------------------------------

def wrong_class(label: int, num_classes: int) -> int:
    """The class the explorer uses for a misleading text and a mixed-in call: the next one."""
    return (int(label) + 1) % num_classes


def describe_text(split: CourseSplit, index: int, level: str) -> str:
    """A description of sample ``index`` that is ``level``: "informative" names its class,
    "uninformative" says "object", "misleading" names :func:`wrong_class`."""
    shape, colour, size, position = (int(a) for a in split.attributes[index])
    label = int(split.labels[index])
    if level == "informative":
        word = split.classes[label]
    elif level == "uninformative":
        word = "object"
    elif level == "misleading":
        word = split.classes[wrong_class(label, len(split.classes))]
    else:
        raise ValueError(f"level must be 'informative', 'uninformative' or 'misleading', got "
                         f"{level!r}")
    where = POSITIONS[position]
    return (f"A {_SIZE_WORDS[SIZES[size]]} {list(COLOURS)[colour]} {word} in the "
            f"{'centre' if where == 'centre' else where}.")


def corrupt_sample(split: CourseSplit, index: int, image_noise: float = 0.0,
                   image_occlusion: float = 0.0, audio_mix: float = 0.0,
                   text: str = "as written", remove: tuple[str, ...] | list[str] = (),
                   seed: int = 0) -> CourseSplit:
    """A one-sample :class:`CourseSplit` holding sample ``index`` of ``split``, corrupted.

    Args:
        image_noise: standard deviation of Gaussian noise added to the pixels (in [0, 1]).
        image_occlusion: side of a grey square over the object's position, as a share of 24
            pixels (0: none, 1: 24 x 24 of the 32 x 32 image).
        audio_mix: level of the call of :func:`wrong_class` mixed into the clip (1: as loud).
        text: one of :data:`TEXT_CHOICES`.
        remove: modalities to remove (black image, 0.3 s of silence, empty text; marked missing).
        seed: seed of the pixel noise.
    """
    if not 0 <= int(index) < len(split):
        raise IndexError(f"index {index} is outside the split's {len(split)} samples")
    unknown = [m for m in remove if m not in MODALITY_NAMES]
    if unknown:
        raise ValueError(f"remove names unknown modality {unknown[0]!r}; expected some of "
                         f"{MODALITY_NAMES}")
    if text not in TEXT_CHOICES:
        raise ValueError(f"text must be one of {TEXT_CHOICES}, got {text!r}")
    for name, value in (("image_noise", image_noise), ("image_occlusion", image_occlusion),
                        ("audio_mix", audio_mix)):
        if not 0.0 <= float(value) <= 2.0:
            raise ValueError(f"{name} must be between 0 and 2, got {value}")
    i = int(index)
    quality = split.quality[i:i + 1].copy()
    label = int(split.labels[i])

    image = split.images[i].astype(np.float32) / 255.0
    if image_noise > 0:
        rng = np.random.default_rng([seed, i])
        image = image + float(image_noise) * rng.standard_normal(image.shape).astype(np.float32)
    if image_occlusion > 0:
        cx, cy = _ANCHORS[split.attributes[i, 3]]
        half = 12.0 * float(image_occlusion)
        x0, x1 = int(max(0, round(cx - half))), int(min(32, round(cx + half)))
        y0, y1 = int(max(0, round(cy - half))), int(min(32, round(cy + half)))
        image[:, y0:y1, x0:x1] = 0.4
    if "image" in remove:
        image[:] = 0.0
        quality[0, 0] = QUALITY_LEVELS["image"].index("missing")
    images = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)[None]

    clip = split.waveform(i)
    if audio_mix > 0 and split.present["audio"][i]:
        other = _clean_example(split, wrong_class(label, len(split.classes)))
        length = max(len(clip), len(other))
        clip = np.pad(clip, (0, length - len(clip))) + float(audio_mix) * np.pad(
            other, (0, length - len(other)))
    if "audio" in remove:
        clip = np.zeros(_MISSING_AUDIO, dtype=np.float32)
        quality[0, 1] = QUALITY_LEVELS["audio"].index("missing")
    audio = np.clip(np.rint(clip * 32767), -32768, 32767).astype(np.int16)[None]

    words = split.texts[i]
    if text != "as written":
        words = describe_text(split, i, text)
        quality[0, 2] = QUALITY_LEVELS["text"].index(text)
    if "text" in remove:
        words = ""
        quality[0, 2] = QUALITY_LEVELS["text"].index("missing")
    return replace(split, images=images, audio=audio,
                   audio_lengths=np.array([audio.shape[1]], dtype=np.int64), texts=[words],
                   labels=split.labels[i:i + 1].copy(), attributes=split.attributes[i:i + 1].copy(),
                   quality=quality, name=f"{split.name}[{i}]")


def _clean_example(split: CourseSplit, label: int) -> np.ndarray:
    """The first clip of class ``label`` with clean audio (any clip of it if none is clean)."""
    clean = split.quality[:, 1] == QUALITY_LEVELS["audio"].index("clean")
    candidates = np.flatnonzero((split.labels == label) & clean)
    if len(candidates) == 0:
        candidates = np.flatnonzero(split.labels == label)
    if len(candidates) == 0:
        return np.zeros(1, dtype=np.float32)
    return split.waveform(int(candidates[0]))


# ---- what the model makes of it ------------------------------------------------------------------

@dataclass
class SampleView:
    """What the model makes of one (corrupted) sample.

    Attributes:
        sample: the one-sample CourseSplit; probs: float (C,) class probabilities;
        weights: modality -> weight (0 for a missing modality; all 0 when none is present);
        prediction, label: class indices; classes: class names.
    """

    sample: CourseSplit
    probs: np.ndarray
    weights: dict[str, float]
    prediction: int
    label: int
    classes: tuple[str, ...]

    def summary(self) -> str:
        """One line: prediction (probability) vs truth, and the weights."""
        verdict = "right" if self.prediction == self.label else "wrong"
        weights = ", ".join(f"{m} {w:.2f}" for m, w in self.weights.items())
        return (f"prediction: {self.classes[self.prediction]} "
                f"(p = {self.probs[self.prediction]:.2f}), truth: {self.classes[self.label]} "
                f"[{verdict}]; modality weights: {weights}")


def _check_model(model: torch.nn.Module) -> None:
    fusion = getattr(model, "fusion", None)
    if not isinstance(fusion, (GatedFusion, WeightedFusion, AttentionFusion)):
        raise ValueError(f"the explorer shows per-sample modality weights, so the model's fusion "
                         f"must be a GatedFusion, WeightedFusion or AttentionFusion; got "
                         f"{type(fusion).__name__}")
    if len(getattr(model, "encoders", {})):
        raise ValueError("the explorer expects a model over frozen features (every encoder "
                         "None), trained on the features of the CourseFeatures passed with it")


@torch.no_grad()
def explain_sample(model: torch.nn.Module, feats: Any, sample: CourseSplit) -> SampleView:
    """Run ``model`` on a one-sample split (e.g. from :func:`corrupt_sample`) through the frozen
    encoders of ``feats``; return the class probabilities and the modality weights."""
    _check_model(model)
    if len(sample) != 1:
        raise ValueError(f"explain_sample expects a one-sample split, got {len(sample)} samples")
    encoded = feats.encode(sample)
    fusion = model.fusion
    source = encoded.sequences if fusion.uses_sequences else encoded.pooled
    device = next(model.parameters()).device
    batch = {m: _to(source[m], device) for m in fusion.modalities}
    batch["present"] = {m: encoded.present[m].to(device) for m in fusion.modalities}
    was_training = model.training
    model.eval()
    try:
        probs = torch.softmax(model(batch).float(), dim=1)[0].cpu().numpy()
    finally:
        model.train(was_training)
    present = [bool(encoded.present[m][0]) for m in fusion.modalities]
    if any(present):
        w = (fusion.modality_attention() if isinstance(fusion, AttentionFusion)
             else fusion.last_weights)[0].float().cpu().numpy()
    else:  # the classifier gives a uniform guess and never calls the fusion
        w = np.zeros(len(fusion.modalities))
    weights = {m: float(w[j]) for j, m in enumerate(fusion.modalities)}
    return SampleView(sample, probs, weights, int(probs.argmax()), int(sample.labels[0]),
                      tuple(sample.classes))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return type(value)(v.to(device) for v in value)


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

        _check_model(model)
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

