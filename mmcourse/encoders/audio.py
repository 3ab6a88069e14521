"""Audio encoders: a log-mel front end, a CNN over the spectrogram, a GRU over its frames.

All three read what the course's collate function puts in a batch: padded waveforms (B, L) float
(zeros after each clip's end) and their true lengths (B,) in samples. The front end turns them
into log-mel spectrograms; the encoders follow the interface of :mod:`mmcourse.encoders`:

* ``encoder(waveform, lengths=None) -> (B, out_dim)``;
* ``encoder.sequence(waveform, lengths=None) -> (features (B, T', out_dim), mask (B, T') bool)``.

Padding is ignored: the spectrogram pads clips with silence (``pad_mode="constant"``), the GRU
runs on packed sequences and the CNN pools only over frames that belong to the clip.

    >>> enc = AudioGRU()
    >>> enc(torch.zeros(2, 4000), lengths=torch.tensor([4000, 2500])).shape
    torch.Size([2, 128])
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmcourse.encoders.masks import lengths_to_mask


def _check_waveform(waveform, lengths, sample_rate: int | None, expected_rate: int
                    ) -> torch.Tensor:
    """Validate a padded waveform batch (B, L) float and its lengths (B,); return the lengths
    as an int64 tensor (all L when ``lengths`` is None)."""
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"expected the waveforms as a torch.Tensor (B, L), got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        hint = " (int16 audio: divide by 32768.0 first)" if waveform.dtype == torch.int16 else ""
        raise ValueError(f"expected float waveforms in [-1, 1], got dtype {waveform.dtype}{hint}")
    if waveform.dim() != 2:
        hint = " (one clip: add a batch dimension with waveform.unsqueeze(0))" \
            if waveform.dim() == 1 else ""
        raise ValueError(f"expected a batch of waveforms shaped (B, L), got shape "
                         f"{tuple(waveform.shape)}{hint}")
    if waveform.shape[0] == 0 or waveform.shape[1] == 0:
        raise ValueError(f"expected at least one clip of at least one sample, got shape "
                         f"{tuple(waveform.shape)}")
    if sample_rate is not None and int(sample_rate) != expected_rate:
        raise ValueError(f"this module expects audio at {expected_rate} Hz but got {sample_rate} "
                         f"Hz: resample first with torchaudio.functional.resample(waveform, "
                         f"{sample_rate}, {expected_rate})")
    batch, length = waveform.shape
    if lengths is None:
        return torch.full((batch,), length, dtype=torch.int64, device=waveform.device)
    lengths = torch.as_tensor(lengths, device=waveform.device)
    if lengths.shape != (batch,) or lengths.is_floating_point():
        raise ValueError(f"expected lengths as {batch} integers (one per clip, in samples), got "
                         f"{lengths.dtype} of shape {tuple(lengths.shape)}")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > length):
        raise ValueError(f"lengths must lie in [0, {length}] (the padded length), got values "
                         f"from {int(lengths.min())} to {int(lengths.max())}")
    return lengths.long()


class LogMel(nn.Module):
    """Waveforms (B, L) float -> log-mel spectrograms (B, n_mels, frames) float.

    A short-time Fourier transform (Hann window of ``n_fft`` samples, a new frame every
    ``hop_length`` samples, clips padded with ``n_fft // 2`` zeros at both ends), the power in
    ``n_mels`` mel bands (HTK mel scale, 0 Hz to the Nyquist frequency), then ``log(power + eps)``.
    The defaults suit the course's 8 kHz audio: 32 ms windows, 10 ms hops, 40 bands, so a clip
    of L samples has ``1 + L // hop_length`` frames.
    """

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 80,
                 n_mels: int = 40, eps: float = 1e-4):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.eps = (
            int(sample_rate), int(n_fft), int(hop_length), int(n_mels), float(eps))
        # pad_mode="constant": the frames of a clip are the same whether or not the batch pads
        # it with zeros (the default "reflect" would mirror the clip's end instead).
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
            n_mels=self.n_mels, pad_mode="constant")

    def forward(self, waveform: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """``waveform`` (B, L) float at ``self.sample_rate`` -> (B, n_mels, 1 + L // hop_length)."""
        _check_waveform(waveform, None, sample_rate, self.sample_rate)
        return torch.log(self.mel(waveform) + self.eps)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Clip lengths in samples (B,) int -> number of frames that belong to each clip (B,)."""
        return 1 + torch.as_tensor(lengths).long() // self.hop_length

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}")


class AudioCNN(nn.Module):
    """A 2-D CNN over the log-mel spectrogram, treated as a one-channel image (mel x time).

    Four blocks of conv 3x3 -> BatchNorm -> ReLU -> 2x2 max-pool (the time axis shrinks by 16),
    then each remaining time step's features (channels x mel bands) are projected to ``out_dim``:
    that is the sequence view. The pooled view is the max over the time steps that belong to the
    clip (padding is masked out), then a linear layer.

    Args:
        sample_rate, n_mels: of the :class:`LogMel` front end.
        out_dim: features per clip (and per time step of ``sequence``).
        spec_augment: in training mode, hide a random band of up to 8 mel bands and a random
            stretch of up to 10 frames of every spectrogram (SpecAugment, Park et al. 2019).
    """

    def __init__(self, sample_rate: int = 8000, n_mels: int = 40, out_dim: int = 128,
                 spec_augment: bool = False, channels: tuple[int, ...] = (8, 16, 32, 32)):
        super().__init__()
        self.frontend = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.out_dim = int(out_dim)
        self.spec_augment = bool(spec_augment)
        self.norm = nn.BatchNorm2d(1)  # standardises the log-mel values
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_mask_param=8, iid_masks=True)
        self.time_mask = torchaudio.transforms.TimeMasking(time_mask_param=10, iid_masks=True)
        layers, c_in = [], 1
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.time_factor = 2 ** len(channels)
        mel_out = n_mels
        for _ in channels:
            mel_out = -(-mel_out // 2)  # ceil_mode pooling
        self.frame_proj = nn.Linear(c_in * mel_out, self.out_dim)
        self.pool_proj = nn.Linear(self.out_dim, self.out_dim)

    def _frames(self, waveform, lengths, sample_rate):
        lengths = _check_waveform(waveform, lengths, sample_rate, self.frontend.sample_rate)
        spec = self.norm(self.frontend(waveform).unsqueeze(1))  # (B, 1, n_mels, T)
        if self.spec_augment and self.training:
            spec = self.time_mask(self.freq_mask(spec))
        x = self.blocks(spec)  # (B, C, n_mels / 16, T / 16)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * mel')
        frames = self.frontend.frame_lengths(lengths)
        t_out = -(-frames // self.time_factor)  # a step is real if it saw a real frame
        return self.frame_proj(x), lengths_to_mask(t_out.clamp(max=x.shape[1]), x.shape[1])

    def sequence(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None,
                 sample_rate: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (B, L) float, lengths (B,) -> features (B, T', out_dim), mask (B, T') bool
        with ``T' = ceil((1 + L // 80) / 16)``."""
        features, mask = self._frames(waveform, lengths, sample_rate)
        return torch.relu(features), mask

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None,
                sample_rate: int | None = None) -> torch.Tensor:
        """Waveforms (B, L) float, lengths (B,) in samples (None: no padding) -> (B, out_dim).

        The clip's feature vector is the max over its real time steps, written
        ``max(dim).values`` rather than ``amax``: with bfloat16 autocast, torch.compile's CPU
        backend (inductor, torch 2.14) computes a non-finite gradient for ``amax`` and the
        weights turn to NaN after one step. Both send the gradient to the maximum (``amax``
        splits it among ties, which after the ReLU only happen at 0, where the gradient is 0
        anyway), so training is the same to the bit."""
        features, mask = self.sequence(waveform, lengths, sample_rate)
        pooled = features.masked_fill(~mask[..., None], float("-inf")).max(dim=1).values
        return self.pool_proj(pooled)


class AudioGRU(nn.Module):
    """A GRU reading the log-mel frames in order, blind to the padding.

    Each frame (n_mels values) is standardised (BatchNorm), the frames of each clip are packed
    with ``pack_padded_sequence`` so the GRU stops at the clip's last real frame, and a linear
    layer maps the GRU's outputs to ``out_dim``. The pooled view projects the final states (the
    forward GRU's last state and, when bidirectional, the backward GRU's state at the first frame);
    the sequence view projects the output at every frame.

    Args:
        sample_rate, n_mels: of the :class:`LogMel` front end.
        hidden: GRU state size per direction.
        out_dim: features per clip (and per frame of ``sequence``).
        bidirectional: also read the frames backwards.
        hop_length: samples between frames; the default, 20 ms at 8 kHz, halves the number of
            steps the GRU has to take (which run one after another) compared with the CNN's 10 ms.
    """

    def __init__(self, sample_rate: int = 8000, n_mels: int = 40, hidden: int = 64,
                 out_dim: int = 128, bidirectional: bool = True, hop_length: int = 160):
        super().__init__()
        self.frontend = LogMel(sample_rate=sample_rate, n_mels=n_mels, hop_length=hop_length)
        self.out_dim = int(out_dim)
        self.norm = nn.BatchNorm1d(n_mels)
        self.gru = nn.GRU(n_mels, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(hidden * (2 if bidirectional else 1), self.out_dim)

    def _run(self, waveform, lengths, sample_rate):
        lengths = _check_waveform(waveform, lengths, sample_rate, self.frontend.sample_rate)
        spec = self.norm(self.frontend(waveform))  # (B, n_mels, T)
        frames = self.frontend.frame_lengths(lengths).clamp(max=spec.shape[-1])
        packed = pack_padded_sequence(spec.transpose(1, 2), frames.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, h_n = self.gru(packed)  # h_n: (directions, B, hidden), in the input order
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=spec.shape[-1])
        return out, h_n, lengths_to_mask(frames, spec.shape[-1])

    def sequence(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None,
                 sample_rate: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (B, L) float, lengths (B,) -> features (B, T, out_dim), mask (B, T) bool with
        ``T = 1 + L // hop_length`` (at padded frames: the projection of a zero GRU output)."""
        out, _, mask = self._run(waveform, lengths, sample_rate)
        return self.proj(out), mask

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None,
                sample_rate: int | None = None) -> torch.Tensor:
        """Waveforms (B, L) float, lengths (B,) in samples (None: no padding) -> (B, out_dim)."""
        _, h_n, _ = self._run(waveform, lengths, sample_rate)
        return self.proj(torch.cat(list(h_n), dim=1))
