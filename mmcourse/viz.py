"""Figures the notebooks share: the course pipeline, image grids, waveforms and spectrograms.

Every function draws on a matplotlib Axes (created when none is given) and returns it (or the
Figure), titles its plot and labels its axes. Colours come from the Okabe-Ito palette, which
stays distinguishable for colour-blind readers; ``use_course_style()`` makes it the default.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

#: Okabe & Ito's colour-blind-safe palette.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
             "#000000")
PIPELINE = ("modality data", "preprocessing", "feature extraction", "alignment", "fusion",
            "joint training", "evaluation")


def use_course_style() -> None:
    """Set matplotlib defaults for the course: Okabe-Ito colours, readable sizes, tight layout."""
    plt.rcParams.update({
        "axes.prop_cycle": plt.cycler(color=OKABE_ITO),
        "figure.dpi": 100,
        "figure.autolayout": True,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "image.cmap": "viridis",
    })


def plot_pipeline(highlight: str | Sequence[str] = (), ax: plt.Axes | None = None) -> plt.Axes:
    """Draw the course pipeline as a row of boxes, highlighting the stages a notebook covers.

    Args:
        highlight: one stage name or several, from ``PIPELINE``.
    """
    stages = [highlight] if isinstance(highlight, str) else list(highlight)
    unknown = [s for s in stages if s not in PIPELINE]
    if unknown:
        raise ValueError(f"unknown pipeline stage(s) {unknown}; expected names from {PIPELINE}")
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 1.4))
    for i, stage in enumerate(PIPELINE):
        on = stage in stages
        ax.text(i, 0, stage.replace(" ", "\n"), ha="center", va="center", fontsize=9,
                color="white" if on else "black", fontweight="bold" if on else "normal",
                bbox={"boxstyle": "round,pad=0.4", "facecolor": OKABE_ITO[0] if on else "#EEEEEE",
                      "edgecolor": OKABE_ITO[0]})
        if i < len(PIPELINE) - 1:
            ax.annotate("", xy=(i + 0.62, 0), xytext=(i + 0.38, 0),
                        arrowprops={"arrowstyle": "->", "color": "#555555"})
    ax.set_xlim(-0.6, len(PIPELINE) - 0.4)
    ax.set_ylim(-0.6, 0.6)
    ax.axis("off")
    ax.set_title("Where this notebook sits in the course pipeline (highlighted)")
    return ax


def _to_hwc(image) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"expected an image shaped (C, H, W) with C = 1 or 3, got {array.shape}")
    array = array.transpose(1, 2, 0)
    if array.dtype == np.uint8:
        return array
    return np.clip(array, 0.0, 1.0)


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8,
                suptitle: str | None = None, size: float = 1.3) -> plt.Figure:
    """Show a batch of images, (N, C, H, W) uint8 or float in [0, 1], in a grid with titles."""
    if len(images) == 0:
        raise ValueError("show_images needs at least one image, got an empty batch")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, min(n, ncols), figsize=(size * min(n, ncols), size * 1.15 * nrows),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(_to_hwc(images[k]), cmap="gray")
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def log_mel(waveform, sample_rate: int, n_mels: int = 40, n_fft: int = 256,
            hop_length: int = 80) -> torch.Tensor:
    """Log-mel spectrogram (n_mels, frames) of a 1-D waveform, with torchaudio."""
    import torchaudio

    wave = torch.as_tensor(np.asarray(waveform), dtype=torch.float32)
    if wave.ndim != 1 or wave.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {tuple(wave.shape)}")
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft,
                                               hop_length=hop_length, n_mels=n_mels)
    return torch.log(mel(wave) + 1e-4)


def plot_waveform(waveform, sample_rate: int, ax: plt.Axes | None = None,
                  title: str = "Waveform") -> plt.Axes:
    """Plot a 1-D waveform against time in seconds."""
    wave = np.asarray(waveform, dtype=np.float32)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2))
    ax.plot(np.arange(len(wave)) / sample_rate, wave, linewidth=0.6, color=OKABE_ITO[0])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_title(title)
    return ax


def mel_band_centres(sample_rate: int, n_mels: int = 40) -> np.ndarray:
    """Centre frequency in Hz of each of ``n_mels`` mel bands spanning 0 Hz to sample_rate / 2
    (HTK mel scale, m = 2595 log10(1 + f / 700), as torchaudio uses by default)."""
    top = 2595.0 * np.log10(1.0 + (sample_rate / 2) / 700.0)
    mels = np.linspace(0.0, top, n_mels + 2)[1:-1]
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def plot_spectrogram(waveform, sample_rate: int, ax: plt.Axes | None = None,
                     title: str = "Log-mel spectrogram", hop_length: int = 80,
                     colorbar: bool = True) -> plt.Axes:
    """Plot the log-mel spectrogram of a waveform: time on x, mel band on y (ticks labelled with
    each band's centre frequency in Hz). ``colorbar=False`` leaves out the colour scale (for grids)."""
    spec = log_mel(waveform, sample_rate, hop_length=hop_length).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.4))
    seconds = spec.shape[1] * hop_length / sample_rate
    im = ax.imshow(spec, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.shape[0]))
    ax.set_xlabel("time (s)")
    centres = mel_band_centres(sample_rate, spec.shape[0])
    ticks = list(range(0, spec.shape[0], 10))
    ax.set_yticks([t + 0.5 for t in ticks], [f"{centres[t]:.0f}" for t in ticks])
    ax.set_ylabel("frequency (Hz, mel bands)")
    ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="log power")
    return ax
