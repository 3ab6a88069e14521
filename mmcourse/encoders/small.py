"""Two tiny encoders for the known-answer tasks of :mod:`mmcourse.data.regimes`.

The regime tasks are small on purpose (8x8 images, 16-frame spectrogram-like arrays), so the
encoders are small too: two convolutions (8 maps), a 4x max-pool, and a linear projection of every
remaining position. They follow the course's encoder interface (see :mod:`mmcourse.encoders`):

* ``encoder(x) -> (B, D)``: pooled features (the maximum over positions, then projected), so a
  pattern is found wherever it sits in the image or in time;
* ``encoder.sequence(x) -> ((B, L, D), (B, L) bool)``: one token per position after the pool
  (image quadrants of 4x4 pixels, groups of 4 frames), all real, for attention fusion;
* ``encoder.out_dim``: D.

    image = SmallImageCNN(out_dim=32)        # x: (B, 1, H, W) float
    audio = SmallSpectrogramCNN(bands=8)     # x: (B, T, bands) float
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _check(x: torch.Tensor, ndim: int, what: str, size: tuple[int | None, ...]) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or not x.is_floating_point():
        raise ValueError(f"expected {what}, a float tensor with {ndim} dimensions, got "
                         f"{type(x).__name__ if not isinstance(x, torch.Tensor) else f'shape {tuple(x.shape)} ({x.dtype})'}")
    for axis, want in enumerate(size):
        if want is not None and x.shape[axis] != want:
            raise ValueError(f"expected {what}; dimension {axis} is {x.shape[axis]}, not {want}")


class SmallImageCNN(nn.Module):
    """``(B, channels, H, W) -> (B, out_dim)``: conv 3x3 - ReLU - conv 3x3 - ReLU - max-pool 4.

    Args:
        channels: input channels (1 for the regime images).
        width: feature maps of each convolution.
        out_dim: size of the features (of the pooled vector and of every token).
    """

    def __init__(self, channels: int = 1, width: int = 8, out_dim: int = 32):
        super().__init__()
        self.channels, self.out_dim = channels, out_dim
        self.conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.MaxPool2d(4))
        self.proj = nn.Linear(width, out_dim)

    def _maps(self, x: torch.Tensor) -> torch.Tensor:  # (B, width, H/4 * W/4) positions last
        _check(x, 4, f"images (B, {self.channels}, H, W)", (None, self.channels))
        return self.conv(x).flatten(2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self._maps(x).max(dim=2).values)

    def sequence(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        tokens = self.proj(self._maps(x).transpose(1, 2))  # (B, L, out_dim)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


class SmallSpectrogramCNN(nn.Module):
    """``(B, T, bands) -> (B, out_dim)``: 1-D convolutions over time, bands as channels.

    Args:
        bands: frequency bands per frame (the last input dimension).
        width: feature maps of each convolution.
        out_dim: size of the features (of the pooled vector and of every token).
    """

    def __init__(self, bands: int = 8, width: int = 8, out_dim: int = 32):
        super().__init__()
        self.bands, self.out_dim = bands, out_dim
        self.conv = nn.Sequential(nn.Conv1d(bands, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.MaxPool1d(4))
        self.proj = nn.Linear(width, out_dim)

    def _maps(self, x: torch.Tensor) -> torch.Tensor:  # (B, width, T/4)
        _check(x, 3, f"spectrogram-like arrays (B, T, {self.bands})", (None, None, self.bands))
        return self.conv(x.transpose(1, 2))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self._maps(x).max(dim=2).values)

    def sequence(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        tokens = self.proj(self._maps(x).transpose(1, 2))  # (B, T/4, out_dim)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
