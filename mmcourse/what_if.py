"""What if one course sample were corrupted? Change it, and read what a fusion model makes of it.

:func:`corrupt_sample` returns a one-sample :class:`~mmcourse.data.course.CourseSplit` with pixel
noise, an occluding patch, another shape's call mixed in, a rewritten text or whole modalities
removed; :func:`explain_sample` runs a fusion model over frozen features on it and returns a
:class:`SampleView`: the class probabilities and the per-sample modality weights of the fusion
(:class:`~mmcourse.fusion.GatedFusion`, :class:`~mmcourse.fusion.WeightedFusion` or
:class:`~mmcourse.fusion.AttentionFusion`). The fusion explorer of :mod:`mmcourse.widgets` is
built on these two.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mmcourse.data.course import (COLOURS, MODALITY_NAMES, POSITIONS, QUALITY_LEVELS, SIZES,
                                  CourseSplit)
from mmcourse.fusion import AttentionFusion, GatedFusion, WeightedFusion

#: Text rewrites the explorer offers ("as written" keeps the sample's own text).
TEXT_CHOICES = ("as written", "informative", "uninformative", "misleading")
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


def check_model(model: torch.nn.Module) -> None:
    """Raise a ValueError unless ``model`` is a classifier over frozen features whose fusion
    reports per-sample modality weights."""
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
    check_model(model)
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
