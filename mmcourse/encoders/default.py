"""The course's default encoder of each modality, built in one place.

Part 2's frozen features, notebook 11's capstone and the joint model of notebook 07 all start
from the same small encoders: an :class:`~mmcourse.encoders.image.ImageCNN` with 16-32-64
channels, an :class:`~mmcourse.encoders.audio.AudioCNN` over log-mels, and a bag of words.
"""
from __future__ import annotations

import torch.nn as nn

from mmcourse.data.attributes import MODALITY_NAMES
from mmcourse.encoders.audio import AudioCNN
from mmcourse.encoders.image import ImageCNN
from mmcourse.encoders.text import BagOfWordsEncoder


def make_encoder(modality: str, dim: int, vocab_size: int | None = None) -> nn.Module:
    """The course's default encoder of ``modality`` ("image", "audio" or "text") with ``dim``
    output features (``encoder.out_dim == dim``); the text encoder needs the tokenizer's
    ``vocab_size``. Freshly initialised from torch's global random state."""
    if modality == "image":
        return ImageCNN(channels=(16, 32, 64), out_dim=dim)
    if modality == "audio":
        return AudioCNN(out_dim=dim)
    if modality == "text":
        if vocab_size is None:
            raise ValueError("the text encoder needs vocab_size")
        return BagOfWordsEncoder(vocab_size, out_dim=dim)
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITY_NAMES}")
