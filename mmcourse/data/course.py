"""The course dataset: coloured shapes you can see, hear and read about.

Every sample is one object with four attributes (shape, colour, size, position) and three
modalities:

* an **image** (3 x 32 x 32, uint8) of the object on a varied background;
* an **audio clip** (mono, 8 kHz, int16, about 0.2 to 0.7 s) of the object's *call*: a short melody
  whose contour (up, down, flat, ...) belongs to its shape, sung at a random pitch and tempo;
* a **text**, a description in varied words (``"a big blue star near the top left"``).

The label is the shape (8 classes). Each sample is corrupted per modality, independently and at
random, so that no single modality is enough (see ``QUALITY_PROBS`` and datasets/README.md):

* image: clean, noisy (heavy pixel noise), occluded (a patch hides most of the object), missing;
* audio: clean, noisy (another object's call on top, plus hiss), missing;
* text: informative (names the shape), uninformative (says "object"), misleading (names the
  wrong shape), missing.

A missing modality keeps a regular shape (a black image, silence, an empty string) and is marked in
``present``. Everything is generated with NumPy from one seed, in a few seconds on a CPU: the same
seed gives the same bytes on every machine with the pinned NumPy.

    >>> splits = make_course_dataset(seed=0, size="small")
    >>> train = splits["train"]; len(train), train.images.shape
    (4000, (4000, 3, 32, 32))
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from mmcourse.cache import entry_path, read_entry, write_entry
from mmcourse.checks import check_int
# The attribute vocabularies live in attributes.py; notebooks import them from here, with the
# dataset they describe.
from mmcourse.data.attributes import (ATTRIBUTES, COLOURS, DIGITS, MELODIES,  # noqa: F401
                                      MODALITY_NAMES, POSITIONS, QUALITY_LEVELS, SAMPLE_RATE,
                                      SHAPES, SIZES)
from mmcourse.data.render import load_digit_glyphs, render_audio, render_images, write_texts

#: Probability of each quality level, per modality, drawn independently for every sample.
QUALITY_PROBS = {
    "image": (0.50, 0.20, 0.15, 0.15),
    "audio": (0.50, 0.30, 0.20),
    "text": (0.50, 0.25, 0.15, 0.10),
}
SPLIT_SIZES = {  # train, val, test
    "small": (4000, 1000, 1000),
    "medium": (16000, 4000, 4000),
    "large": (48000, 8000, 8000),
}
#: Datasets of at most this many samples (all splits together) are kept on disk once generated:
#: "small" (about 80 MB) and "medium" (about 330 MB); "large" is generated every time.
CACHE_MAX_SAMPLES = 24_000


@dataclass
class CourseSplit:
    """One split of the course dataset (NumPy arrays; see ``as_dataset`` for PyTorch).

    Attributes:
        images: uint8 (N, 3, 32, 32).
        audio: int16 (N, L_max), each clip zero-padded at the end; divide by 32768 for floats.
        audio_lengths: int64 (N,), the true length of each clip in samples.
        texts: list of N strings ("" where the text is missing).
        labels: int64 (N,), index into ``classes``.
        attributes: int64 (N, 4): shape, colour, size, position as indices into
            ``SHAPES`` (or ``DIGITS``), ``COLOURS``, ``SIZES``, ``POSITIONS``.
        quality: int8 (N, 3): the quality level of image, audio and text as indices into
            ``QUALITY_LEVELS[modality]``.
        classes: the class names.
        sample_rate: audio samples per second.
    """

    images: np.ndarray
    audio: np.ndarray
    audio_lengths: np.ndarray
    texts: list[str]
    labels: np.ndarray
    attributes: np.ndarray
    quality: np.ndarray
    classes: tuple[str, ...] = SHAPES
    sample_rate: int = SAMPLE_RATE
    name: str = field(default="train")

    def __post_init__(self) -> None:
        n = len(self.labels)
        sizes = {"images": len(self.images), "audio": len(self.audio),
                 "audio_lengths": len(self.audio_lengths), "texts": len(self.texts),
                 "attributes": len(self.attributes), "quality": len(self.quality)}
        bad = {k: v for k, v in sizes.items() if v != n}
        if bad:
            raise ValueError(f"CourseSplit {self.name!r}: {n} labels but " +
                             ", ".join(f"{v} {k}" for k, v in bad.items()))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"CourseSplit({self.name!r}, {len(self)} samples, {len(self.classes)} classes, "
                f"images {tuple(self.images.shape)}, audio up to {self.audio.shape[1]} samples "
                f"at {self.sample_rate} Hz)")

    @property
    def present(self) -> dict[str, np.ndarray]:
        """Modality name -> bool (N,), False where that modality is missing."""
        return {m: self.quality[:, j] != QUALITY_LEVELS[m].index("missing")
                for j, m in enumerate(MODALITY_NAMES)}

    def quality_names(self, modality: str) -> np.ndarray:
        """The quality level of every sample for ``modality``, as strings (N,)."""
        if modality not in MODALITY_NAMES:
            raise KeyError(f"unknown modality {modality!r}; expected one of {MODALITY_NAMES}")
        levels = np.array(QUALITY_LEVELS[modality])
        return levels[self.quality[:, MODALITY_NAMES.index(modality)]]

    def waveform(self, i: int) -> np.ndarray:
        """Clip ``i`` as float32 in [-1, 1], trimmed to its true length."""
        return self.audio[i, : self.audio_lengths[i]].astype(np.float32) / 32768.0

    def caption(self, i: int) -> str:
        """A clean, canonical description of sample ``i`` (whatever its text's quality):
        ``"large blue star top left"``. Useful as a target for captioning."""
        s, c, z, p = self.attributes[i]
        return f"{SIZES[z]} {list(COLOURS)[c]} {self.classes[s]} {POSITIONS[p]}"

    def as_dataset(self, modalities: tuple[str, ...] = MODALITY_NAMES):
        """A :class:`mmcourse.data.dataset.MultimodalDataset` over ``modalities``.

        Images become float32 in [0, 1] (N, 3, 32, 32); audio a list of float32 waveforms of
        varying length; texts stay strings; ``present`` marks the missing modalities.
        """
        import torch

        from mmcourse.data.dataset import MultimodalDataset

        unknown = [m for m in modalities if m not in MODALITY_NAMES]
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITY_NAMES}, "
                             f"got {tuple(modalities)}")
        data = {}
        if "image" in modalities:
            data["image"] = torch.from_numpy(self.images).float().div_(255.0)
        if "audio" in modalities:
            data["audio"] = [torch.from_numpy(self.waveform(i)) for i in range(len(self))]
        if "text" in modalities:
            data["text"] = list(self.texts)
        present = {m: v for m, v in self.present.items() if m in modalities}
        return MultimodalDataset(data, torch.from_numpy(self.labels), present=present)


def make_course_dataset(seed: int = 0, size: str | Mapping[str, int] = "small",
                        image_source: str = "shapes",
                        quality_probs: Mapping[str, tuple[float, ...]] | None = None,
                        cache: bool | str | os.PathLike = True) -> dict[str, CourseSplit]:
    """Generate the course dataset (or load it from the cache, where an earlier call left it).

    Args:
        seed: any non-negative integer; the same seed gives identical arrays.
        size: ``"small"`` (4000/1000/1000, the notebooks' default), ``"medium"``
            (16000/4000/4000), ``"large"`` (48000/8000/8000), or a mapping such as
            ``{"train": 500, "test": 200}``. Each split has its own random stream, so the test
            split of seed 0 is the same whatever the size of the training split.
        image_source: ``"shapes"`` (drawn shapes, the default) or ``"digits"``: real handwritten
            digits 0-7 from scikit-learn's bundled digits data set stand in for the shapes (class
            k is the digit k; texts then name digits).
        quality_probs: override ``QUALITY_PROBS`` for some modalities, e.g.
            ``{"image": (1, 0, 0, 0)}`` for always-clean images.
        cache: keep the generated arrays on disk and load them next time (generating "small"
            takes about 9 s on a 2-core CPU, loading it well under a second). True: in
            ``$MMCOURSE_CACHE`` or ``~/.cache/mmcourse``; a path: there; False: never. Only
            datasets of at most ``CACHE_MAX_SAMPLES`` samples are kept. The cache key covers
            every argument, the NumPy version and the generator's source code (see
            :mod:`mmcourse.cache`), so what is loaded is exactly what would be generated.

    Returns:
        ``{"train": CourseSplit, "val": CourseSplit, "test": CourseSplit}`` (or the splits named
        in ``size``).
    """
    check_int(seed, "seed", minimum=0)
    if isinstance(size, str):
        if size not in SPLIT_SIZES:
            raise ValueError(f"unknown size {size!r}; expected one of {list(SPLIT_SIZES)} "
                             f"or a mapping like {{'train': 1000, 'test': 200}}")
        counts = dict(zip(("train", "val", "test"), SPLIT_SIZES[size]))
    else:
        counts = dict(size)
        bad = {k: v for k, v in counts.items()
               if k not in ("train", "val", "test") or isinstance(v, bool)
               or not isinstance(v, (int, np.integer)) or v < 1}
        if bad or not counts:
            raise ValueError(f"size must map 'train'/'val'/'test' to positive integers, got {counts}")
    if image_source not in ("shapes", "digits"):
        raise ValueError(f"unknown image_source {image_source!r}; expected 'shapes' or 'digits'")
    probs = dict(QUALITY_PROBS)
    for m, p in (quality_probs or {}).items():
        if m not in QUALITY_LEVELS:
            raise ValueError(f"quality_probs names unknown modality {m!r}; expected {MODALITY_NAMES}")
        p = tuple(float(x) for x in p)
        if len(p) != len(QUALITY_LEVELS[m]) or min(p) < 0 or not np.isclose(sum(p), 1.0):
            raise ValueError(f"quality_probs[{m!r}] must be {len(QUALITY_LEVELS[m])} non-negative "
                             f"numbers summing to 1 for {QUALITY_LEVELS[m]}, got {p}")
        probs[m] = p
    path = None
    if cache and sum(int(n) for n in counts.values()) <= CACHE_MAX_SAMPLES:
        args = dict(seed=int(seed), counts={k: int(v) for k, v in counts.items()},
                    image_source=image_source, probs=probs)
        path = entry_path("datasets", cache, args, __file__, prefix=f"seed{seed}",
                          suffix=".pkl", versions=(np.__version__,))
        cached = _load_cached(path, list(counts))
        if cached is not None:
            return cached
    digits = load_digit_glyphs() if image_source == "digits" else None
    split_ids = {"train": 0, "val": 1, "test": 2}
    splits = {name: _make_split(np.random.SeedSequence([int(seed), split_ids[name]]), n, name,
                                probs, digits)
              for name, n in counts.items()}
    if path is not None:
        write_entry(path, lambda tmp: tmp.write_bytes(pickle.dumps(splits, protocol=5)))
    return splits


def _load_cached(path, names: list[str]) -> dict[str, CourseSplit] | None:
    """The splits cached at ``path``, or None (see :func:`mmcourse.cache.read_entry`)."""
    return read_entry(path, lambda p: pickle.loads(p.read_bytes()),
                      valid=lambda splits: (isinstance(splits, dict) and list(splits) == names
                                            and all(isinstance(split, CourseSplit)
                                                    for split in splits.values())))


# --------------------------------------------------------------------------------------------
# Generation. All randomness is drawn per split from one generator, attribute by attribute, so
# a change to one modality's renderer never changes the others' random numbers (the renderers
# are in render.py).

def _make_split(seed_seq: np.random.SeedSequence, n: int, name: str,
                probs: Mapping[str, tuple[float, ...]], digits: np.ndarray | None) -> CourseSplit:
    attr_rng, image_rng, audio_rng, text_rng, quality_rng = (
        np.random.default_rng(s) for s in seed_seq.spawn(5))
    labels = attr_rng.integers(0, len(SHAPES), n)
    attributes = np.stack([
        labels,
        attr_rng.integers(0, len(COLOURS), n),
        attr_rng.integers(0, len(SIZES), n),
        attr_rng.integers(0, len(POSITIONS), n),
    ], axis=1).astype(np.int64)
    quality = np.stack([quality_rng.choice(len(QUALITY_LEVELS[m]), size=n, p=probs[m])
                        for m in MODALITY_NAMES], axis=1).astype(np.int8)
    images = render_images(attributes, quality[:, 0], image_rng, digits)
    audio, lengths = render_audio(labels, quality[:, 1], audio_rng)
    classes = SHAPES if digits is None else DIGITS
    texts = write_texts(attributes, quality[:, 2], text_rng, classes)
    return CourseSplit(images=images, audio=audio, audio_lengths=lengths, texts=texts,
                       labels=labels.astype(np.int64), attributes=attributes, quality=quality,
                       classes=classes, name=name)
