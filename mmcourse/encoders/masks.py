"""Masks over padded sequences, and the mean that ignores the padding.

A batch of sequences of different lengths (audio frames, text tokens) is padded to the longest;
``lengths`` (B,) says how many positions of each row are real. Every encoder's ``sequence`` view
returns such a mask (B, T) bool, True at real positions, next to its features.
"""
from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool mask (B, max_len), True at positions ``t < lengths[b]`` (the real positions).

    ``lengths`` int (B,) on any device; the mask is on the same device.
    """
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: ``sum_t mask[b,t] * features[b,t] / sum_t mask[b,t]``.

    ``features`` (B, T, D) float, ``mask`` (B, T) bool -> (B, D). Padding has no influence.
    """
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

