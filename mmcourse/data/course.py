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

import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from mmcourse.checks import check_int

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven")
COLOURS = {  # RGB in 0..1; picked to stay apart for colour-blind viewers too (blue/orange/...)
    "red": (0.84, 0.15, 0.16),
    "orange": (0.96, 0.55, 0.10),
    "yellow": (0.95, 0.85, 0.20),
    "green": (0.20, 0.65, 0.30),
    "blue": (0.15, 0.40, 0.85),
    "purple": (0.60, 0.30, 0.75),
}
SIZES = ("small", "medium", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "centre")
ATTRIBUTES = ("shape", "colour", "size", "position")

MODALITY_NAMES = ("image", "audio", "text")
QUALITY_LEVELS = {
    "image": ("clean", "noisy", "occluded", "missing"),
    "audio": ("clean", "noisy", "missing"),
    "text": ("informative", "uninformative", "misleading", "missing"),
}
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
IMAGE_SIZE = 32
SAMPLE_RATE = 8000
#: Each class's melody, in semitones above the clip's base pitch: the contour is the class.
MELODIES = (
    (0, 4, 7),        # circle: up, up
    (0, 0, 0),        # square: flat
    (0, 7, 0),        # triangle: up, down
    (7, 0, 7),        # diamond: down, up
    (7, 4, 0),        # star: down, down
    (0, 12),          # cross: one octave leap
    (0, 0, 7, 7),     # ring: low, low, high, high
    (0, 5, 0, 5),     # hexagon: see-saw
)
_SHAPE_WORDS = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "hoop", "donut"),
    "hexagon": ("hexagon",),
}
_DIGIT_WORDS = {name: (name, f"digit {name}", f"number {name}") for name in DIGITS}
_VAGUE_WORDS = ("object", "shape", "thing", "figure")
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium-sized", "mid-sized"),
               "large": ("large", "big", "huge")}
_POSITION_PHRASES = {
    "top left": ("in the top left", "near the top left corner", "at the upper left"),
    "top right": ("in the top right", "near the top right corner", "at the upper right"),
    "bottom left": ("in the bottom left", "near the bottom left corner", "at the lower left"),
    "bottom right": ("in the bottom right", "near the bottom right corner", "at the lower right"),
    "centre": ("in the centre", "in the middle", "right in the middle"),
}
_ARTICLE = re.compile(r"\b(a) (?!one\b)([aeiou])")  # "a orange" -> "an orange"; "a one" stays
_TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "there is a {size} {colour} {shape} {where}",
    "{where}, a {colour} {shape} that is {size}",
    "the picture shows a {size} {shape} in {colour} {where}",
    "a single {colour} {shape}, {size}, {where}",
    "{size} and {colour}: a {shape} {where}",
    "you can see a {colour} {shape} {where}; it is {size}",
    "{colour} {shape} {where}",
)


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
                        ) -> dict[str, CourseSplit]:
    """Generate the course dataset.

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
    digits = _load_digit_glyphs() if image_source == "digits" else None
    split_ids = {"train": 0, "val": 1, "test": 2}
    return {name: _make_split(np.random.SeedSequence([int(seed), split_ids[name]]), n, name,
                              probs, digits)
            for name, n in counts.items()}


# --------------------------------------------------------------------------------------------
# Generation. All randomness is drawn per split from one generator, attribute by attribute, so
# a change to one modality's renderer never changes the others' random numbers.

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
    images = _render_images(attributes, quality[:, 0], image_rng, digits)
    audio, lengths = _render_audio(labels, quality[:, 1], audio_rng)
    classes = SHAPES if digits is None else DIGITS
    texts = _write_texts(attributes, quality[:, 2], text_rng, classes)
    return CourseSplit(images=images, audio=audio, audio_lengths=lengths, texts=texts,
                       labels=labels.astype(np.int64), attributes=attributes, quality=quality,
                       classes=classes, name=name)


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Coverage of ``SHAPES[shape]`` at coordinates (u, v) in units of the object's radius
    (v points down). Returns a bool array shaped like ``u``."""
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)

    def polygon(sides: int, first_normal: float, apothem: float) -> np.ndarray:
        angles = first_normal + 2 * np.pi * np.arange(sides) / sides
        dist = np.max(u[..., None] * np.cos(angles) + v[..., None] * np.sin(angles), axis=-1)
        return dist <= apothem

    name = SHAPES[shape]
    if name == "circle":
        return rho <= 0.95
    if name == "square":
        return polygon(4, 0.0, 0.75)
    if name == "triangle":
        return polygon(3, np.pi / 2, 0.5) & (rho <= 1.15)  # flat base, apex up
    if name == "diamond":
        return polygon(4, np.pi / 4, 0.72)
    if name == "star":
        return rho <= 0.45 + 0.55 * np.clip(np.cos(5 * (phi + np.pi / 2)), 0, None) ** 2
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if name == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if name == "hexagon":
        return polygon(6, np.pi / 6, 0.86)
    raise AssertionError(name)


def _load_digit_glyphs() -> list[np.ndarray]:
    """scikit-learn's bundled 8x8 digits 0..7 as float alpha maps in [0, 1], grouped by digit."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return [bunch.images[bunch.target == d] / 16.0 for d in range(len(DIGITS))]


def _render_images(attributes: np.ndarray, quality: np.ndarray, rng: np.random.Generator,
                   digits: list[np.ndarray] | None) -> np.ndarray:
    n, s = len(attributes), IMAGE_SIZE
    ss = 2  # supersampling factor for smooth edges
    # Per-sample draws, all up front so the streams never depend on chunking.
    radius = np.array([4.5, 7.0, 9.5])[attributes[:, 2]] * rng.uniform(0.9, 1.1, n)
    anchor = np.array([[9.5, 9.5], [22.5, 9.5], [9.5, 22.5], [22.5, 22.5], [16, 16]])
    centre = anchor[attributes[:, 3]] + rng.uniform(-2, 2, (n, 2))
    angle = rng.uniform(-0.25, 0.25, n)  # radians, a slight tilt
    colour = np.array(list(COLOURS.values()))[attributes[:, 1]] + rng.uniform(-0.06, 0.06, (n, 3))
    background = rng.uniform(0.05, 0.4, n)[:, None] + rng.uniform(-0.05, 0.05, (n, 3))
    gradient = rng.uniform(-0.15, 0.15, (n, 2))
    glyph_pick = rng.integers(0, 1 << 30, n)
    base_noise = rng.normal(0, 0.03, (n, 3, s, s))
    heavy_sigma = rng.uniform(0.3, 0.5, n)
    heavy_noise = rng.normal(0, 1, (n, 3, s, s))
    patch_half = rng.uniform(0.75, 1.1, n)[:, None] * radius[:, None] * rng.uniform(0.9, 1.2, (n, 2))
    patch_shift = rng.uniform(-0.4, 0.4, (n, 2)) * radius[:, None]
    patch_grey = rng.uniform(0.2, 0.6, n)

    grid = (np.arange(s * ss) + 0.5) / ss  # pixel centres in image coordinates
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, 3, s, s), dtype=np.uint8)
    for start in range(0, n, 512):
        b = slice(start, min(start + 512, n))
        dx = gx[None] - centre[b, 0, None, None]
        dy = gy[None] - centre[b, 1, None, None]
        cos, sin = np.cos(angle[b])[:, None, None], np.sin(angle[b])[:, None, None]
        u = (cos * dx + sin * dy) / radius[b, None, None]
        v = (-sin * dx + cos * dy) / radius[b, None, None]
        alpha = np.zeros(u.shape, dtype=np.float64)
        for k in range(len(SHAPES)):
            idx = np.flatnonzero(attributes[b, 0] == k)
            if len(idx) == 0:
                continue
            if digits is None:
                alpha[idx] = _shape_mask(k, u[idx], v[idx])
            else:
                glyphs = digits[k][glyph_pick[b][idx] % len(digits[k])]
                alpha[idx] = _sample_glyph(glyphs, u[idx], v[idx])
        alpha = alpha.reshape(-1, s, ss, s, ss).mean(axis=(2, 4))  # back to 32 x 32
        yy = (np.arange(s) / s - 0.5)
        ramp = (gradient[b, 0, None, None] * yy[None, :, None] +
                gradient[b, 1, None, None] * yy[None, None, :])
        bg = background[b, :, None, None] + ramp[:, None]
        img = bg * (1 - alpha[:, None]) + colour[b, :, None, None] * alpha[:, None]
        img = img + base_noise[b]
        q = quality[b]
        noisy = q == QUALITY_LEVELS["image"].index("noisy")
        img[noisy] += heavy_sigma[b][noisy, None, None, None] * heavy_noise[b][noisy]
        for j in np.flatnonzero(q == QUALITY_LEVELS["image"].index("occluded")):
            i = start + j
            cx, cy = centre[i] + patch_shift[i]
            hx, hy = patch_half[i]
            x0, x1 = int(max(0, round(cx - hx))), int(min(s, round(cx + hx)))
            y0, y1 = int(max(0, round(cy - hy))), int(min(s, round(cy + hy)))
            img[j, :, y0:y1, x0:x1] = patch_grey[i]
        img[q == QUALITY_LEVELS["image"].index("missing")] = 0.0
        images[b] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return images


def _sample_glyph(glyphs: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of 8x8 glyphs (M, 8, 8) at coordinates (u, v) in [-1, 1]."""
    col = np.floor((u + 1) / 2 * 8).astype(int)
    row = np.floor((v + 1) / 2 * 8).astype(int)
    inside = (col >= 0) & (col < 8) & (row >= 0) & (row < 8)
    m = np.arange(len(glyphs))[:, None, None]
    return np.where(inside, glyphs[m, row.clip(0, 7), col.clip(0, 7)], 0.0)


def _melody_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "base": 330.0 * 2 ** (rng.uniform(-4, 4, n) / 12),   # Hz, about 260-415
        "note": rng.uniform(0.07, 0.12, n),                   # seconds per note
        "gap": rng.uniform(0.01, 0.03, n),                    # seconds between notes
        "lead": rng.uniform(0.0, 0.05, n),                    # silence before the first note
        "harmonics": rng.integers(1, 4, n),                   # timbre: 1 to 3 partials
        "gain": rng.uniform(0.3, 0.7, n),
        "wobble": rng.uniform(-0.3, 0.3, (n, 4)),             # per-note detune, semitones
    }


def _melody(label: int, p: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Synthesise sample ``i``'s melody for class ``label`` as float64 samples."""
    sr = SAMPLE_RATE
    note_len = int(p["note"][i] * sr)
    gap = int(p["gap"][i] * sr)
    t = np.arange(note_len) / sr
    envelope = np.minimum(1.0, t / 0.008) * np.exp(-t / (0.6 * p["note"][i]))
    pieces = [np.zeros(int(p["lead"][i] * sr))]
    for k, semitone in enumerate(MELODIES[label]):
        f = p["base"][i] * 2 ** ((semitone + p["wobble"][i, k]) / 12)
        tone = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, p["harmonics"][i] + 1))
        pieces += [envelope * tone, np.zeros(gap)]
    clip = np.concatenate(pieces)
    return p["gain"][i] * clip / max(np.abs(clip).max(), 1e-9)


def _render_audio(labels: np.ndarray, quality: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(labels)
    own = _melody_params(rng, n)
    other = _melody_params(rng, n)
    distractor = (labels + rng.integers(1, len(SHAPES), n)) % len(SHAPES)  # never the same class
    mix_level = rng.uniform(0.7, 1.2, n)
    hiss = rng.uniform(0.05, 0.15, n)
    tail = rng.uniform(0.01, 0.05, n)
    noise_seeds = rng.integers(0, 2**63, n)
    clips = []
    for i in range(n):
        level = QUALITY_LEVELS["audio"][quality[i]]
        clip = _melody(labels[i], own, i)
        if level == "noisy":
            d = _melody(distractor[i], other, i) * mix_level[i]
            length = max(len(clip), len(d))
            clip = np.pad(clip, (0, length - len(clip))) + np.pad(d, (0, length - len(d)))
        clip = np.pad(clip, (0, int(tail[i] * SAMPLE_RATE)))
        noise_rng = np.random.default_rng(noise_seeds[i])
        sigma = hiss[i] if level == "noisy" else 0.003
        clip = clip + noise_rng.normal(0, sigma, len(clip))
        if level == "missing":
            clip = np.zeros(int(0.3 * SAMPLE_RATE))
        clips.append(np.clip(np.rint(clip * 32767), -32768, 32767).astype(np.int16))
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    audio = np.zeros((n, lengths.max()), dtype=np.int16)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
    return audio, lengths


def _write_texts(attributes: np.ndarray, quality: np.ndarray, rng: np.random.Generator,
                 classes: tuple[str, ...]) -> list[str]:
    words = _SHAPE_WORDS if classes == SHAPES else _DIGIT_WORDS
    colour_names = list(COLOURS)
    n = len(attributes)
    template = rng.integers(0, len(_TEMPLATES), n)
    wrong = (attributes[:, 0] + rng.integers(1, len(classes), n)) % len(classes)
    picks = rng.integers(0, 1 << 30, (n, 4))
    texts = []
    for i in range(n):
        level = QUALITY_LEVELS["text"][quality[i]]
        if level == "missing":
            texts.append("")
            continue
        shape, colour, size, position = attributes[i]
        if level == "uninformative":
            options = _VAGUE_WORDS
        else:
            options = words[classes[wrong[i] if level == "misleading" else shape]]
        fields = {
            "shape": options[picks[i, 0] % len(options)],
            "colour": colour_names[colour],
            "size": _SIZE_WORDS[SIZES[size]][picks[i, 1] % len(_SIZE_WORDS[SIZES[size]])],
            "where": _POSITION_PHRASES[POSITIONS[position]][picks[i, 2] % 3],
        }
        text = _ARTICLE.sub(r"\1n \2", _TEMPLATES[template[i]].format(**fields))
        texts.append(text[0].upper() + text[1:] + ".")
    return texts
