"""Known-answer multimodal tasks: which fusion should win, stated before anything is trained.

Each *regime* is a small two-modality classification task whose structure is known in advance
(Liang et al., NeurIPS 2023: redundancy, uniqueness, synergy; Huang et al., ICML 2022: modality
competition), with a prediction of the method that theory says should win::

    data = make_regime("synergy", seed=0, classes=4)
    data.preset.predicted            # ('tensor', 'lowrank'): the family predicted to win
    data.train.inputs["image"].shape # (N, 1, 8, 8): images with a 3x3 glyph somewhere
    data.train.inputs["audio"].shape # (N, 16, 8): 16 frames x 8 bands, a 3-frame motif somewhere
    loader = data.train.loader(batch_size=128, shuffle=True, seed=0)   # TensorBatches

How a modality shows a *symbol* s in 0..K-1: the image is Gaussian noise (std ``noise``) with the
3x3 glyph of s (entries +-1, times an amplitude) added at a random place; the spectrogram-like
array is noise with the 3-frame motif of s added at a random time, scaled to the glyph's energy
so that neither modality is easier by construction. An encoder must find the
pattern wherever it is (:mod:`mmcourse.encoders.small`). A *corrupted* modality shows a wrong
symbol, just as clearly; with a *cue*, its first image row or first band is also lit (3.0), so
the corruption can be seen. With ``cue="other"`` (the ``reliability`` preset's default) the cue
of a modality's corruption is lit in the *other* modality (the image's first row when the audio
is wrong, the audio's first band when the image is): no encoder sees its own corruption, so
ignoring the wrong modality takes an interaction between the two (one modality's cue times the
other's features). A *missing* modality is all zeros with ``present`` False.

Everything is drawn from one ``torch.Generator`` seeded with ``seed``: the same seed and knobs
give the same bytes. Knobs are keyword arguments of :func:`make_regime`; ``PRESETS[name].knobs``
lists each preset's knobs and defaults. A bad knob raises a ValueError that says what was
expected and what was given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mmcourse.data.tensors import TensorBatches

MODALITIES = ("image", "audio")
CUE = 3.0  # the value of a lit cue row (image) or band (audio)
_COMMON = {"classes": 4, "n_train": 1000, "n_val": 300, "n_test": 1000, "noise": 0.5,
           "image_size": 8, "frames": 16, "bands": 8}


def _knobs(**own: Any) -> dict[str, Any]:
    """The common knobs with a preset's own defaults on top (None drops a common knob)."""
    merged = {**_COMMON, **own}
    return {k: v for k, v in merged.items() if v is not None}


@dataclass(frozen=True)
class Preset:
    """A named regime: its structure, its knobs, and the winner predicted before measuring.

    ``predicted``: methods (single modalities or fusion names) predicted to win; the best of
    them is compared with concat. ``baseline``: True where concat or late fusion is itself the
    predicted optimum (the others should tie with it, not lose or win). ``why``: the reason.
    """

    name: str
    structure: str
    predicted: tuple[str, ...]
    why: str
    baseline: bool = False
    knobs: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("redundant", "both modalities show the label (noisy): either alone is enough",
           ("concat", "late"),
           "the modalities are independent noisy views of one label; the optimal rule adds their "
           "evidence (a sum of log-likelihoods), which late fusion is and concat contains, so "
           "every fusion ties; all beat each single modality", True,
           _knobs(noise=0.9)),
    Preset("unique", "label = (image part, audio part): each modality shows a different part",
           ("concat", "late"),
           "log p(y|x) = log p(image part|image) + log p(audio part|audio): additive, so late "
           "fusion and concat are optimal and every fusion ties; each single modality is capped "
           "at 1 / (the other part's size)", True,
           _knobs(classes=None, image_part=2, audio_part=2)),
    Preset("synergy", "label = (image symbol + audio symbol) mod K, the symbols uniform",
           ("tensor", "lowrank"),
           "each modality alone says nothing about the label (chance), and neither does a sum "
           "of per-modality scores (late fusion: additive, at chance); the label is a product-"
           "like interaction, which the bilinear family builds directly ([z_img,1] x [z_aud,1]) "
           "while concat must assemble it from one ReLU layer", False,
           _knobs(noise=0.3, n_train=2000)),
    Preset("reliability", "both show the label, but in a share `corrupt` of the samples one "
           "modality (either) shows a wrong symbol; the *other* modality carries a cue of which "
           "(`cue='other'`; `cue=True` lights the corrupted one itself)",
           ("gated", "attention"),
           "the right modality changes per sample and the cue says which, but only the other "
           "modality shows it: a per-sample gate (or attention weights) computed from both "
           "switches the wrong modality off with one number, while concat sums per-modality "
           "terms and must build the product of one modality's cue and the other's features "
           "from one ReLU layer. (With the cue on the corrupted modality itself, its own "
           "encoder can silence it, and concat needs no gate.)", False,
           _knobs(corrupt=0.6, cue="other")),
    Preset("reliability_nocue", "as reliability, without the cue: a corrupted modality looks "
           "like a clean one", ("concat", "late"),
           "nothing tells which modality is wrong, so no method can choose per sample: where the "
           "two disagree any rule is right half the time (ceiling 1 - corrupt / 2) and every "
           "fusion ties; a gate has nothing to read", True,
           _knobs(corrupt=0.6, cue=False)),
    Preset("imbalance", "the image shows the label loudly but is wrong in a share `flip`; the "
           "audio always shows it, faintly (learned slowly)", ("audio",),
           "modality competition (Huang et al. 2022): trained jointly, the fast image lowers the "
           "loss first and the faint audio is under-learned, so every joint fusion stays near "
           "the image's ceiling (1 - flip) while the audio trained alone goes past it", False,
           _knobs(flip=0.3, strong_amplitude=2.0, weak_amplitude=0.75, noise=0.5)),
    Preset("shift", "as reliability with the cue on the corrupted modality itself "
           "(`cue=True`), but corruption rates change: training mostly corrupts the image, "
           "testing mostly the audio", ("gated", "attention"),
           "a per-sample gate reads the cue and carries over to new rates; concat and late learn "
           "the training mixture (audio almost always right) and lean on it when it is wrong",
           False,
           _knobs(train_image=0.5, train_audio=0.1, test_image=0.1, test_audio=0.5)),
    Preset("missing", "both show the label (as redundant); at test a share `test_missing` of "
           "the samples lacks one modality (either, present=False); training has all", ("late",),
           "late fusion averages the logits of the present modalities, and each modality's "
           "logits alone still classify; concat (and the bilinear family) see zeros they never "
           "saw in training where a modality is missing", False,
           _knobs(noise=0.9, test_missing=0.5, train_missing=0.0)),
]}

_RATES = ("corrupt", "flip", "train_image", "train_audio", "test_image", "test_audio",
          "test_missing", "train_missing")
_COUNTS = {"n_train": 10, "n_val": 10, "n_test": 10, "image_size": 5, "frames": 4, "bands": 2,
           "image_part": 2, "audio_part": 2, "classes": 2}


def _check_knobs(preset: Preset, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(preset.knobs))
    if unknown:
        raise ValueError(f"unknown knob {unknown[0]!r} for regime {preset.name!r}; its knobs "
                         f"are {sorted(preset.knobs)}")
    knobs = {**preset.knobs, **given}
    for k, v in knobs.items():
        if k in _COUNTS:
            if isinstance(v, bool) or not isinstance(v, int) or v < _COUNTS[k]:
                raise ValueError(f"{k} must be an integer >= {_COUNTS[k]}, got {v!r}")
        elif k == "cue":
            if not isinstance(v, bool) and v != "other":
                raise ValueError(f"cue must be True, False or 'other', got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{k} must be a number, got {v!r}")
        elif k in _RATES and not 0.0 <= v <= 1.0:
            raise ValueError(f"{k} is a share of samples and must be in [0, 1], got {v!r}")
        elif k == "noise" and v < 0:
            raise ValueError(f"noise is a standard deviation and must be >= 0, got {v!r}")
        elif k.endswith("amplitude") and v <= 0:
            raise ValueError(f"{k} must be > 0, got {v!r}")
    classes = knobs.get("classes", knobs.get("image_part", 0) * knobs.get("audio_part", 0))
    if classes > 16:
        raise ValueError(f"at most 16 classes (distinct 3x3 glyphs), got {classes}")
    for split in ("train", "test"):
        if knobs.get(f"{split}_image", 0) + knobs.get(f"{split}_audio", 0) > 1:
            raise ValueError(f"{split}_image + {split}_audio is the share of samples with one "
                             f"modality corrupted and must be <= 1, got "
                             f"{knobs[f'{split}_image']} + {knobs[f'{split}_audio']}")
    return knobs


@dataclass
class RegimeSplit:
    """One split: ``inputs`` {"image": (N, 1, S, S), "audio": (N, T, bands)} float32, ``labels``
    (N,) int64, ``present`` {m: (N,) bool} (False = missing), ``corrupted`` {m: (N,) bool},
    ``symbols`` {m: (N,) int64}: the symbol each modality shows (a wrong one where corrupted;
    in ``unique``, the part of the label it carries). ``dataclasses.replace(split, labels=...)``
    relabels a split from its symbols."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    present: dict[str, torch.Tensor]
    corrupted: dict[str, torch.Tensor]
    symbols: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
               modalities: tuple[str, ...] = MODALITIES) -> TensorBatches:
        """Batch dicts ``{"image", "audio", "label", "present"}`` for ``fit``/``accuracy``."""
        return TensorBatches({m: self.inputs[m] for m in modalities}, self.labels,
                             present={m: self.present[m] for m in modalities},
                             batch_size=batch_size, shuffle=shuffle, seed=seed)


@dataclass
class RegimeData:
    """A generated regime: its preset, the knobs used, the class count and three splits."""

    preset: Preset
    knobs: dict[str, Any]
    seed: int
    num_classes: int
    train: RegimeSplit
    val: RegimeSplit
    test: RegimeSplit

    @property
    def chance(self) -> float:
        """Accuracy of a constant guess: the classes are balanced, 1 / num_classes."""
        return 1.0 / self.num_classes


def _other(symbols: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """A uniformly drawn symbol different from each of ``symbols``."""
    return (symbols + torch.randint(1, k, symbols.shape, generator=g)) % k


def _latents(name: str, kn: dict, n: int, k: int, split: str, g: torch.Generator) -> dict:
    """Per sample: label, each modality's symbol, amplitude, corrupted, lit cue and present."""
    y = torch.randint(0, k, (n,), generator=g)
    ones, no = torch.ones(n), torch.zeros(n, dtype=torch.bool)
    out = {"label": y, "symbol": {"image": y.clone(), "audio": y.clone()},
           "amplitude": {"image": ones, "audio": ones.clone()},
           "corrupted": {"image": no, "audio": no.clone()}, "cue": {"image": no, "audio": no},
           "present": {"image": ~no, "audio": ~no}}
    if name == "unique":
        out["symbol"] = {"image": y // kn["audio_part"], "audio": y % kn["audio_part"]}
    elif name == "synergy":
        a, b = (torch.randint(0, k, (n,), generator=g) for _ in MODALITIES)
        out.update(label=(a + b) % k, symbol={"image": a, "audio": b})
    elif name in ("reliability", "reliability_nocue", "shift"):
        if name == "shift":
            rates = (kn[f"{'train' if split != 'test' else 'test'}_{m}"] for m in MODALITIES)
            r_img, r_aud = rates
        else:
            r_img = r_aud = kn["corrupt"] / 2
        u = torch.rand(n, generator=g)
        bad = {"image": u < r_img, "audio": (u >= r_img) & (u < r_img + r_aud)}
        cue = kn.get("cue", True)
        for m, o in zip(MODALITIES, reversed(MODALITIES)):
            out["symbol"][m] = torch.where(bad[m], _other(y, k, g), y)
            out["cue"][m] = bad[o] if cue == "other" else bad[m] & cue
        out["corrupted"] = bad
    elif name == "imbalance":
        flip = torch.rand(n, generator=g) < kn["flip"]
        out["symbol"]["image"] = torch.where(flip, _other(y, k, g), y)
        out["corrupted"]["image"] = flip
        out["amplitude"] = {"image": ones * kn["strong_amplitude"],
                            "audio": ones * kn["weak_amplitude"]}
    if name == "missing":
        share = kn["test_missing"] if split == "test" else kn["train_missing"]
        gone = torch.rand(n, generator=g) < share
        which = torch.randint(0, 2, (n,), generator=g)
        out["present"] = {"image": ~(gone & (which == 0)), "audio": ~(gone & (which == 1))}
    return out


def _render(lat: dict, glyphs: torch.Tensor, motifs: torch.Tensor, kn: dict,
            g: torch.Generator) -> dict[str, torch.Tensor]:
    """Noise plus each sample's pattern at a random place; the cue row/band; zeros if missing."""
    n, s, t, b = len(lat["label"]), kn["image_size"], kn["frames"], kn["bands"]
    image = kn["noise"] * torch.randn(n, s, s, generator=g)
    rows = torch.randint(1, s - 2, (n,), generator=g)   # row 0 is kept for the cue
    cols = torch.randint(0, s - 2, (n,), generator=g)
    glyph = glyphs[lat["symbol"]["image"]] * lat["amplitude"]["image"].view(n, 1, 1)
    idx = torch.arange(n)
    for dr in range(3):
        for dc in range(3):
            image[idx, rows + dr, cols + dc] += glyph[:, dr, dc]
    image[:, 0][lat["cue"]["image"]] = CUE
    audio = kn["noise"] * torch.randn(n, t, b, generator=g)
    start = torch.randint(0, t - 2, (n,), generator=g)
    scale = (3 / (b - 1)) ** 0.5   # the motif gets the glyph's energy (9 entries of +-1)
    motif = motifs[lat["symbol"]["audio"]] * (scale * lat["amplitude"]["audio"]).view(n, 1, 1)
    for dt in range(3):
        audio[idx, start + dt, 1:] += motif[:, dt]    # band 0 is kept for the cue
    audio[:, :, 0][lat["cue"]["audio"]] = CUE
    inputs = {"image": image.unsqueeze(1), "audio": audio}
    return {m: x * lat["present"][m].view(n, *([1] * (x.ndim - 1))) for m, x in inputs.items()}


def num_classes(name: str, **knobs: Any) -> int:
    """The number of classes of regime ``name`` with ``knobs`` (checked as :func:`make_regime`
    checks them), without generating anything: ``classes``, or ``image_part * audio_part``."""
    if name not in PRESETS:
        raise ValueError(f"unknown regime {name!r}; expected one of {list(PRESETS)}")
    kn = _check_knobs(PRESETS[name], knobs)
    return kn["image_part"] * kn["audio_part"] if "image_part" in kn else kn["classes"]


def make_regime(name: str, seed: int = 0, **knobs: Any) -> RegimeData:
    """Generate the regime ``name`` (one of ``PRESETS``) with ``seed`` and optional knobs.

    Common knobs: ``classes`` K (2-16), ``n_train``, ``n_val``, ``n_test`` (samples per split),
    ``noise`` (std of the background), ``image_size``, ``frames``, ``bands``. Preset knobs: see
    ``PRESETS[name].knobs`` and each preset's ``structure``. Validation follows the training
    distribution; only ``shift`` and ``missing`` make the test split differ.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown regime {name!r}; expected one of {list(PRESETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    preset = PRESETS[name]
    kn = _check_knobs(preset, knobs)
    k = num_classes(name, **knobs)
    g = torch.Generator().manual_seed(seed)
    n_sym = {"image": kn.get("image_part", k), "audio": kn.get("audio_part", k)}
    codes = torch.randperm(2 ** 9, generator=g)[:n_sym["image"]]          # distinct 3x3 glyphs
    glyphs = ((codes.view(-1, 1) >> torch.arange(9)) & 1).float().mul(2).sub(1).view(-1, 3, 3)
    motifs = torch.randint(0, 2, (n_sym["audio"], 3, kn["bands"] - 1), generator=g).float() * 2 - 1
    splits = {}
    for split in ("train", "val", "test"):
        lat = _latents(name, kn, kn[f"n_{split}"], k, split, g)
        splits[split] = RegimeSplit(_render(lat, glyphs, motifs, kn, g), lat["label"].long(),
                                    lat["present"], lat["corrupted"],
                                    {m: lat["symbol"][m].long() for m in MODALITIES})
    return RegimeData(preset, kn, seed, k, **splits)
