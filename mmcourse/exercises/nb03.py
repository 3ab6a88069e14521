"""Checks for the exercises of notebook 03 (audio: from waveforms to features)."""
from __future__ import annotations

import math

import torch

from mmcourse.exercises.core import call, expect_close, expect_number, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions, recorded


@register("3.1", "hz_to_mel and mel_to_hz convert between hertz and mels",
          hint="use the HTK formula of section 4 for hz_to_mel and solve it for f to get mel_to_hz; "
               "mel_to_hz(hz_to_mel(f)) must give f back. Use torch functions, which work on "
               "tensors.")
def check_mel_scale(answer) -> str:
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not all(map(callable, answer)):
        fail(f"check('3.1', ...) expects the pair of functions (hz_to_mel, mel_to_hz), got "
             f"{type(answer).__name__}")
    hz_to_mel, mel_to_hz = answer
    freqs = torch.tensor([0.0, 100.0, 700.0, 1000.0, 4000.0])
    want = 2595 * torch.log10(1 + freqs / 700)
    got = call(hz_to_mel, freqs)
    expect_tensor("hz_to_mel(freqs)", got, shape=(5,))
    # 1127 * ln(1 + f / 700) is the same curve (1127 = 2595 / ln 10), so it passes too.
    if torch.allclose(got.double(), 2595 * torch.log(1 + freqs.double() / 700), rtol=1e-3):
        fail("hz_to_mel uses the natural logarithm (torch.log); the formula has log10")
    expect_close("hz_to_mel(freqs)", got.float(), want, atol=1e-2, rtol=1e-4)
    mels = torch.tensor([0.0, 500.0, 1000.0, 2146.1])
    back = call(mel_to_hz, mels)
    expect_tensor("mel_to_hz(mels)", back, shape=(4,))
    want_hz = 700 * (10 ** (mels / 2595) - 1)
    if torch.allclose(back.double(), 700 * (torch.exp(mels.double() / 2595) - 1), rtol=1e-3) and \
            not torch.allclose(back.double(), want_hz.double(), rtol=1e-3):
        fail("mel_to_hz uses exp(); the inverse of log10 is a power of 10, not of e")
    expect_close("mel_to_hz(mels)", back.float(), want_hz, atol=1e-2, rtol=1e-4)
    round_trip = call(mel_to_hz, call(hz_to_mel, freqs))
    expect_close("mel_to_hz(hz_to_mel(freqs))", round_trip.float(), freqs, atol=1e-2, rtol=1e-4)
    return f"1000 Hz = {float(want[3]):.1f} mel, and back"


@register("3.2", "n_frames predicts how many frames an STFT has",
          hint="count the frame starts 0, hop, 2 * hop, ... for which a whole frame of n_fft "
               "samples fits in the signal (with center=True, the signal padded by n_fft // 2 at "
               "both ends).")
def check_n_frames(n_frames) -> str:
    cases = [(4000, 256, 80), (1234, 256, 80), (5284, 256, 160), (1000, 400, 160), (256, 256, 64),
             (333, 128, 100)]
    for length, n_fft, hop in cases:
        for center in (True, False):
            x = torch.zeros(length)
            spec = torch.stft(x, n_fft, hop_length=hop, window=torch.ones(n_fft), center=center,
                              return_complex=True)
            want = spec.shape[-1]
            got = expect_number(f"n_frames({length}, {n_fft}, {hop}, center={center})",
                          call(n_frames, length, n_fft, hop, center=center))
            if got == want:
                continue
            label = f"n_frames({length}, n_fft={n_fft}, hop={hop}, center={center})"
            if center and got == length // hop:
                fail(f"{label} returned {got:g} but torch.stft gives {want}: you are one short, "
                     f"a frame also starts at sample 0")
            if center and got == math.ceil(length / hop):
                fail(f"{label} returned {got:g} but torch.stft gives {want}: with center=True "
                     f"frames start at 0, hop, 2 hop, ... up to and including length (in the "
                     f"padded signal): count those starts")
            if not center and got == 1 + length // hop:
                fail(f"{label} returned {got:g} but torch.stft gives {want}: without centring a "
                     f"frame needs n_fft real samples, so the last start is at most length - n_fft: "
                     f"count the starts from 0 up to there")
            fail(f"{label} returned {got:g} but torch.stft gives {want} frames")
    return "matches torch.stft for 12 settings"


@register("3.3", "time_mask hides a stretch of frames",
          hint="copy the spectrogram first, then set the frames from start to start + width - 1 on "
               "the LAST axis (time), whatever the leading axes are.")
def check_time_mask(time_mask) -> str:
    gen = torch.Generator().manual_seed(3)
    spec = torch.randn(40, 30, generator=gen)
    original = spec.clone()
    got = call(time_mask, spec, 5, 7)
    if not torch.equal(spec, original):
        fail("time_mask changed its input in place; clone it first so the original spectrogram "
             "stays intact (SpecAugment draws a new mask for every pass over the data)")
    expect_tensor("time_mask(spec, 5, 7)", got, shape=(40, 30))
    want = original.clone()
    want[:, 5:12] = 0.0
    if not torch.equal(got, want):
        swapped = original.clone()
        swapped[5:12, :] = 0.0
        if torch.equal(got, swapped):
            fail("time_mask(spec, 5, 7) hid mel bands 5 to 11, not frames: time is the last axis "
                 "of a (n_mels, frames) spectrogram")
        hidden = [int(i) for i in torch.nonzero((got == 0).all(dim=0)).flatten()]
        if len(hidden) in (6, 8):
            fail(f"time_mask(spec, 5, 7) hid frames {hidden}; 7 frames, 5 to 11 inclusive, "
                 f"were expected (start:start + width in Python)")
        expect_close("time_mask(spec, 5, 7)", got, want)
    batch = torch.randn(2, 1, 40, 30, generator=gen)
    got = call(time_mask, batch, 28, 5, value=-1.0)
    want = batch.clone()
    want[..., 28:] = -1.0
    ignored = batch.clone()
    ignored[..., 28:] = 0.0
    if torch.equal(got, ignored):
        fail("time_mask(batch, 28, 5, value=-1.0) filled the frames with 0: it ignored the value "
             "argument; write value (-1.0 here) into the masked frames")
    expect_close("time_mask(batch (2, 1, 40, 30), 28, 5, value=-1.0)", got, want)
    return "frames 5 to 11 hidden, input untouched, batches and mask values work"


@register("3.4", "alias_frequency finds where a tone lands after sampling",
          hint="sampling at rate sr cannot tell f from f - k * sr for any integer k, nor from its "
               "negative; the alias is the distance from f to the nearest multiple of sr.")
def check_alias_frequency(alias_frequency) -> str:
    cases = [(440.0, 8000, 440.0), (3999.0, 8000, 3999.0), (5000.0, 8000, 3000.0),
             (9000.0, 8000, 1000.0), (12500.0, 8000, 3500.0), (16000.0, 8000, 0.0),
             (7000.0, 16000, 7000.0), (11025.0, 16000, 4975.0)]
    for freq, sr, want in cases:
        name = f"alias_frequency({freq:g}, {sr})"
        got = expect_number(name, call(alias_frequency, freq, sr))
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        if math.isclose(got, freq):
            fail(f"{name} returned {got:g} Hz, the tone's own frequency; above the Nyquist "
                 f"frequency ({sr / 2:g} Hz) a tone folds back to a lower one")
        if math.isclose(got, sr - freq) or math.isclose(got, freq - sr):
            fail(f"{name} returned {got:g} Hz; folding once around the sample rate only works "
                 f"between sr / 2 and sr: subtract the NEAREST multiple of the sample rate and "
                 f"take the absolute value")
        fail(f"{name} returned {got:g} Hz but {want:g} Hz was expected")
    return "tones below, above and far above the Nyquist frequency"


@register("3.5", "masked_mean averages only the real frames",
          hint="a masked mean over the time axis: zero the padded frames, sum over time and divide "
               "by the number of real frames, kept at least 1 so that an empty clip gives zeros.")
def check_masked_mean(masked_mean) -> str:
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(4, 6, 3, generator=gen)
    lengths = torch.tensor([6, 3, 1, 0])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    feats[~mask] = 50.0  # padding with a value that shows when it leaks in
    got = call(masked_mean, feats, mask)
    expect_tensor("masked_mean(features, mask)", got, shape=(4, 3))
    want = torch.zeros(4, 3)
    for b, n in enumerate(lengths.tolist()):
        if n:
            want[b] = feats[b, :n].mean(dim=0)
    if torch.isnan(got).any():
        if not torch.isnan(got[:3]).any():
            fail("masked_mean gives NaN for a clip with no real frames (0 / 0); clamp the count "
                 "to at least 1 so such a row is all zeros")
        fail("masked_mean(features, mask) contains NaN values")
    if torch.allclose(got, feats.mean(dim=1)):
        fail("masked_mean(features, mask) is the plain mean over all frames: the padded frames "
             "(value 50 here) leak in; multiply by the mask first")
    divided_by_t = (feats * mask[..., None]).sum(dim=1) / feats.shape[1]
    if torch.allclose(got, divided_by_t):
        fail("masked_mean divides by the padded length T; divide by each clip's number of real "
             "frames, mask.sum(dim=1)")
    expect_close("masked_mean(features, mask)", got, want, atol=1e-5)
    return "padding ignored, empty clips give zeros"


@register("3.6", "predicted test accuracy of the audio CNN per audio quality",
          hint="for each quality level ask what the clip holds: the object's call alone, two calls "
               "of different classes at a similar loudness, or silence. Any well-formed prediction "
               "passes: the measurement, not the check, says whether you were right.")
def check_quality_prediction(predicted_accuracy) -> str:
    from mmcourse.data.course import QUALITY_LEVELS

    accuracy = expect_fractions("predicted_accuracy", predicted_accuracy, QUALITY_LEVELS["audio"],
                                "the test accuracy on clips of that quality")
    return recorded(accuracy, "the next cell measures them")
