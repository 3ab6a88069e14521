"""The course synergy task for ``mmcourse bench regimes``: image-text matching
(:mod:`mmcourse.data.matching`) with frozen features vs joint training, at notebook 07's defaults.

Frozen: Part 2's encoders (trained alone on the shape label, :func:`mmcourse.features.course_features`)
turn every pair into features, and concatenation fusion trains on them. Joint: the same kinds of
encoders (:func:`mmcourse.encoders.default.make_encoder`) and the same fusion trained end to end
on the matching label. Notebook 07, section 1.1, writes the same experiment out in the open.
"""
from __future__ import annotations

from typing import Any

import torch

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.matching import make_matching_task
from mmcourse.data.tensors import TensorBatches
from mmcourse.device import get_device
from mmcourse.encoders.default import make_encoder
from mmcourse.features import course_features, raw_tensors
from mmcourse.fusion import ConcatFusion
from mmcourse.reproducibility import seed_everything
from mmcourse.training import evaluate, fit

PAIR = ("image", "text")
#: Notebook 07's defaults: fusion epochs on frozen features, end-to-end epochs, learning rates.
FROZEN_EPOCHS, JOINT_EPOCHS, FROZEN_LR, JOINT_LR, AMP, DIM = 15, 4, 2e-3, 3e-3, "auto", 64


def synergy_task(seeds: int = 1, device: torch.device | str | None = None,
                 joint_epochs: int = JOINT_EPOCHS) -> dict[str, Any]:
    """Test accuracy (percent) of frozen-feature concat fusion and of joint training on the
    matching task, seed 0 (the frozen encoders are the bench's most expensive part, so one seed
    whatever ``seeds`` is). Returns ``{"frozen", "joint", "chance", "seed", "joint_epochs"}``."""
    del seeds  # one seed: see the docstring
    device = get_device(device)
    pairs = make_matching_task(seed=0)
    labels = {s: torch.from_numpy(pairs[s].labels) for s in pairs}

    def batches(tensors, split, shuffle=False):
        return TensorBatches(tensors[split], labels[split], shuffle=shuffle, seed=0).to(device)

    def train_and_test(model, tensors, epochs, lr, amp=None):
        fit(model, batches(tensors, "train", True), batches(tensors, "val"), epochs=epochs,
            lr=lr, amp=amp, device=device, desc="synergy task")
        return 100 * evaluate(model, batches(tensors, "test"), device=device)["accuracy"]

    feats = course_features(seed=0, device=device)
    encoded = {s: feats.encode(pairs[s]) for s in pairs}
    pooled = {s: {m: encoded[s].pooled[m] for m in PAIR} for s in pairs}
    seed_everything(0)
    frozen = MultimodalClassifier({m: None for m in PAIR},
                                  ConcatFusion({m: feats.dims[m] for m in PAIR}, DIM), 2)
    frozen_acc = train_and_test(frozen, pooled, FROZEN_EPOCHS, FROZEN_LR)

    raw = {s: raw_tensors(pairs[s], feats.tokenizer, PAIR) for s in pairs}
    seed_everything(0)
    vocab = feats.models["text"].encoder.vocab_size
    joint = MultimodalClassifier({"image": make_encoder("image", DIM),
                                  "text": make_encoder("text", DIM, vocab_size=vocab)},
                                 ConcatFusion({m: DIM for m in PAIR}, DIM), 2)
    joint_acc = train_and_test(joint, raw, joint_epochs, JOINT_LR, AMP)
    chance = 100 * max(float(labels["test"].float().mean()), 1 - float(labels["test"].float().mean()))
    return {"frozen": round(frozen_acc, 1), "joint": round(joint_acc, 1), "chance": round(chance, 1),
            "seed": 0, "joint_epochs": joint_epochs}
