"""How the course dataset draws, sings and writes one object: its image, its call, its text.

:func:`render_images`, :func:`render_audio` and :func:`write_texts` turn the attributes and the
quality levels of a split (drawn by :mod:`mmcourse.data.course`) into uint8 images, int16 clips
and strings. Each takes its own random generator and draws everything it needs up front, so a
change to one modality's renderer never changes another's random numbers.
"""
from __future__ import annotations

import re

import numpy as np

from mmcourse.data.attributes import (COLOURS, DIGITS, IMAGE_SIZE, MELODIES, POSITIONS,
                                      QUALITY_LEVELS, SAMPLE_RATE, SHAPES, SIZES)

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


def load_digit_glyphs() -> list[np.ndarray]:
    """scikit-learn's bundled 8x8 digits 0..7 as float alpha maps in [0, 1], grouped by digit."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return [bunch.images[bunch.target == d] / 16.0 for d in range(len(DIGITS))]


def render_images(attributes: np.ndarray, quality: np.ndarray, rng: np.random.Generator,
                   digits: list[np.ndarray] | None) -> np.ndarray:
    """Images uint8 (N, 3, 32, 32) of the objects ``attributes`` int (N, 4) at the image quality
    levels ``quality`` int (N,); ``digits`` (see :func:`load_digit_glyphs`) draws digits instead
    of shapes."""
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


def render_audio(labels: np.ndarray, quality: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The calls of classes ``labels`` (N,) at the audio quality levels ``quality`` (N,):
    ``(audio int16 (N, L_max) zero-padded, lengths int64 (N,) in samples)``."""
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


def write_texts(attributes: np.ndarray, quality: np.ndarray, rng: np.random.Generator,
                 classes: tuple[str, ...]) -> list[str]:
    """N descriptions of the objects ``attributes`` (N, 4) at the text quality levels
    ``quality`` (N,), naming ``classes`` ("" where the text is missing)."""
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
