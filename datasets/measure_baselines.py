"""Measure what each modality, and their fusion, can do on the course dataset.

The numbers in the dataset card (datasets/README.md) come from this script. It trains small,
plain models end to end on the training split, picks the epoch with the best validation accuracy
and reports test accuracy, for several seeds:

* image only: a 3-layer CNN;
* audio only: a 3-layer CNN over a log-mel spectrogram;
* text only: a bag of words into a linear layer;
* concat: the three encoders, their features concatenated, an MLP head (early fusion);
* gated: the same encoders and head as concat, but a gate network reads all features and gives
  each sample its own weight in (0, 1) per modality (0 for a missing one), which scales that
  modality's features before the head: per-sample adaptive fusion.

Run from the repository root:

    python datasets/measure_baselines.py            # 3 seeds, small dataset, about 4 minutes
    python datasets/measure_baselines.py --seeds 0 --epochs 5   # a quick look
    python datasets/measure_baselines.py --json     # machine-readable

No result here is tuned per method: every model gets the same optimiser, epochs and data.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

from mmcourse import get_device, seed_everything
from mmcourse.training import to_device
from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS, make_course_dataset

METHODS = ("image", "audio", "text", "concat", "gated")


# ---- inputs: every split turned into tensors once --------------------------------------------

def prepare(splits, vocab=None):
    """Tensors for every split: images float (N,3,32,32), log-mels (N,1,40,T), bag-of-words
    (N,V), present masks (N,3) and labels. The vocabulary comes from the training texts."""
    words = lambda t: re.findall(r"[a-z]+", t.lower())  # noqa: E731
    if vocab is None:
        vocab = sorted({w for t in splits["train"].texts for w in words(t)})
    index = {w: i for i, w in enumerate(vocab)}
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_fft=256, hop_length=80,
                                               n_mels=40)
    out = {}
    for name, split in splits.items():
        audio = torch.from_numpy(split.audio.astype(np.float32) / 32768.0)
        with torch.no_grad():
            spec = torch.log(mel(audio) + 1e-4).unsqueeze(1)
        bow = torch.zeros(len(split), len(vocab))
        for i, t in enumerate(split.texts):
            for w in words(t):
                if w in index:
                    bow[i, index[w]] = 1.0
        out[name] = {
            "image": torch.from_numpy(split.images).float() / 255.0,
            "audio": spec,
            "text": bow,
            "present": torch.from_numpy(np.stack([split.present[m] for m in MODALITY_NAMES], 1)),
            "label": torch.from_numpy(split.labels),
            "quality": torch.from_numpy(split.quality.astype(np.int64)),
        }
    return out, vocab


# ---- models -------------------------------------------------------------------------------------

def conv_encoder(in_ch: int, dim: int = 64) -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(in_ch, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, dim), nn.AdaptiveMaxPool2d(1), nn.Flatten())


class Encoders(nn.Module):
    """One encoder per modality, each giving 64 features."""

    def __init__(self, vocab_size: int, modalities=MODALITY_NAMES, dim: int = 64):
        super().__init__()
        make = {"image": lambda: conv_encoder(3, dim), "audio": lambda: conv_encoder(1, dim),
                "text": lambda: nn.Sequential(nn.Linear(vocab_size, dim), nn.ReLU())}
        self.modalities = tuple(modalities)
        self.nets = nn.ModuleDict({m: make[m]() for m in self.modalities})

    def forward(self, batch):
        return [self.nets[m](batch[m]) for m in self.modalities]


class Unimodal(nn.Module):
    def __init__(self, vocab_size, modality, n_classes):
        super().__init__()
        self.enc = Encoders(vocab_size, (modality,))
        self.head = nn.Linear(64, n_classes)

    def forward(self, batch):
        return self.head(self.enc(batch)[0])


class Concat(nn.Module):
    def __init__(self, vocab_size, n_classes):
        super().__init__()
        self.enc = Encoders(vocab_size)
        self.head = nn.Sequential(nn.Linear(3 * 64, 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, batch):
        return self.head(torch.cat(self.enc(batch), dim=1))


class Gated(nn.Module):
    """Concat with per-sample gates: a gate network reads all features and scales each
    modality's features by a weight in (0, 1) before the same MLP head as concat (weights of
    missing modalities are 0). With every gate at 1 it is concat, so it can only add."""

    def __init__(self, vocab_size, n_classes):
        super().__init__()
        self.enc = Encoders(vocab_size)
        self.gate = nn.Sequential(nn.Linear(3 * 64, 64), nn.ReLU(), nn.Linear(64, 3))
        self.head = nn.Sequential(nn.Linear(3 * 64, 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, batch):
        feats = self.enc(batch)
        weights = torch.sigmoid(self.gate(torch.cat(feats, dim=1))) * batch["present"]  # (B, 3)
        return self.head(torch.cat([weights[:, j:j + 1] * f for j, f in enumerate(feats)], dim=1))


def build(method, vocab_size, n_classes):
    if method in MODALITY_NAMES:
        return Unimodal(vocab_size, method, n_classes)
    return {"concat": Concat, "gated": Gated}[method](vocab_size, n_classes)


# ---- training -----------------------------------------------------------------------------------

def batches(data, idx, size):
    for start in range(0, len(idx), size):
        b = idx[start:start + size]
        yield {k: v[b] for k, v in data.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def predict(model, data, size=500):
    model.eval()
    idx = torch.arange(len(data["label"]), device=data["label"].device)
    return torch.cat([model(b).argmax(1) for b in batches(data, idx, size)])


#: Test conditions besides the ordinary test split: the same test objects with one modality
#: missing for every sample, and with every modality corrupted more often than in training.
SHIFTS = {
    "no image": {"image": (0, 0, 0, 1)},
    "no audio": {"audio": (0, 0, 1)},
    "no text": {"text": (0, 0, 0, 1)},
    "harder": {"image": (0.25, 0.25, 0.25, 0.25), "audio": (0.25, 0.45, 0.30),
               "text": (0.25, 0.25, 0.30, 0.20)},
}


def accuracy(model, data):
    return (predict(model, data) == data["label"]).float().mean().item()


def train_one(method, data, n_classes, vocab_size, seed, epochs, batch_size=128, lr=2e-3):
    generator = seed_everything(seed)
    device = data["train"]["label"].device
    model = build(method, vocab_size, n_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best_val, best_state = -1.0, None
    n = len(data["train"]["label"])
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        for b in batches(data["train"], order, batch_size):
            loss = F.cross_entropy(model(b), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = (predict(model, data["val"]) == data["val"]["label"]).float().mean().item()
        if val > best_val:
            best_val, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    pred = predict(model, data["test"])
    correct = (pred == data["test"]["label"]).float()
    by_quality = {}
    for j, m in enumerate(MODALITY_NAMES):
        for level_id, level in enumerate(QUALITY_LEVELS[m]):
            mask = data["test"]["quality"][:, j] == level_id
            by_quality[f"{m}:{level}"] = correct[mask].mean().item() if mask.any() else None
    shifted = {name: accuracy(model, d) for name, d in data.get("shifted", {}).items()}
    return {"test_acc": correct.mean().item(), "val_acc": best_val, "by_quality": by_quality,
            "shifted": shifted}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (the data seed is --data-seed)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--size", default="small")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: mmcourse.get_device)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    start = time.time()
    splits = make_course_dataset(seed=args.data_seed, size=args.size)
    data, vocab = prepare(splits)
    n_test = len(splits["test"])
    shifted_splits = {name: make_course_dataset(seed=args.data_seed, size={"test": n_test},
                                                quality_probs=probs)["test"]
                      for name, probs in SHIFTS.items()}
    data["shifted"] = prepare(shifted_splits, vocab)[0]
    device = get_device(args.device)
    data = to_device(data, device)
    n_classes = len(splits["train"].classes)
    results = {}
    for method in args.methods:
        runs = [train_one(method, data, n_classes, len(vocab), s, args.epochs) for s in args.seeds]
        accs = [r["test_acc"] for r in runs]
        results[method] = {
            "test_acc_mean": statistics.mean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_acc_runs": accs,
            "shifted_mean": {k: statistics.mean(r["shifted"][k] for r in runs) for k in SHIFTS},
            "by_quality_first_seed": runs[0]["by_quality"],
        }
        if not args.json:
            print(f"  {method:7s} {100 * statistics.mean(accs):5.1f}%  "
                  f"(runs: {', '.join(f'{100 * a:.1f}' for a in accs)})", file=sys.stderr)
    elapsed = time.time() - start
    if args.json:
        print(json.dumps({"config": vars(args), "device": str(device), "torch": torch.__version__,
                          "seconds": round(elapsed, 1),
                          "results": results}, indent=2))
        return 0
    best_uni = max(MODALITY_NAMES, key=lambda m: results.get(m, {}).get("test_acc_mean", -1))
    print(f"\nCourse dataset (seed {args.data_seed}, size {args.size}): test accuracy over "
          f"training seeds {args.seeds}, {args.epochs} epochs, chance = {100 / n_classes:.1f}% "
          f"(device {device}, torch {torch.__version__})")
    print(f"{'method':8s} {'mean':>6s} {'std':>5s} | " + " ".join(f"{k:>9s}" for k in SHIFTS))
    for method, r in results.items():
        print(f"{method:8s} {100 * r['test_acc_mean']:6.1f} {100 * r['test_acc_std']:5.1f} | " +
              " ".join(f"{100 * r['shifted_mean'][k]:9.1f}" for k in SHIFTS))
    print("(the columns after | are mean test accuracy with that modality missing for every "
          "sample, and with every modality corrupted more often than in training)")
    if {"concat", "gated"} <= results.keys() and best_uni in results:
        u, c, g = (100 * results[k]["test_acc_mean"] for k in (best_uni, "concat", "gated"))
        print(f"\nbest single modality: {best_uni} {u:.1f}%; concat - best single = {c - u:+.1f} "
              f"points; gated - concat = {g - c:+.1f} points")
    print(f"({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
