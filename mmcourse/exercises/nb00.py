"""Checks for the exercises of notebook 00 (setup and tour)."""
from __future__ import annotations

import math

import torch

from mmcourse.exercises.core import call, expect_close, expect_number, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions


@register("0.1", "missing_fraction counts the missing modalities",
          hint="the fraction of samples with a property is the mean of a True/False array that "
               "marks it; here the property is 'missing', the opposite of what split.present[m] "
               "says.")
def check_missing_fraction(missing_fraction) -> str:
    from mmcourse.data.course import MODALITY_NAMES, make_course_dataset

    split = make_course_dataset(seed=123, size={"train": 300})["train"]
    expected = {m: float((~split.present[m]).mean()) for m in MODALITY_NAMES}
    got = call(missing_fraction, split)
    if not isinstance(got, dict):
        fail(f"missing_fraction(split) returned a {type(got).__name__}; a dict like "
             f"{{'image': 0.15, 'audio': 0.2, 'text': 0.1}} was expected")
    if set(got) != set(expected):
        fail(f"missing_fraction(split) returned the keys {sorted(got)}; expected exactly "
             f"{sorted(expected)}")
    for m, want in expected.items():
        value = expect_number(f"missing_fraction(split)[{m!r}]", got[m], "a fraction")
        if math.isclose(value, want * len(split)):
            fail(f"missing_fraction(split)[{m!r}] is {value:g}, the number of missing samples; "
                 f"divide by len(split) to get a fraction")
        if math.isclose(value, 1 - want, abs_tol=1e-9) and not math.isclose(want, 0.5):
            fail(f"missing_fraction(split)[{m!r}] is {value:.3f}, which is the fraction PRESENT; "
                 f"the fraction missing is 1 minus that")
        expect_close(f"missing_fraction(split)[{m!r}]", value, want, atol=1e-9)
    return ", ".join(f"{m} {v:.1%}" for m, v in expected.items()) + " on a 300-sample check split"


@register("0.2", "dominant_frequency finds the pitch of a tone",
          hint="the pitch is the frequency, in Hz (not a bin index, not cycles per sample), of the "
               "frequency bin with the largest magnitude; rfftfreq needs the time between samples "
               "to give Hz.")
def check_dominant_frequency(dominant_frequency) -> str:
    cases = [(440.0, 8000, 8000), (1250.0, 8000, 4000), (300.0, 16000, 16000)]
    for freq, sr, n in cases:
        t = torch.arange(n) / sr
        wave = 0.5 * torch.sin(2 * math.pi * freq * t) + 0.1 * torch.sin(2 * math.pi * 3.1 * freq * t)
        got = expect_number(f"dominant_frequency(wave, {sr})", call(dominant_frequency, wave, sr),
                            "a number (the frequency in Hz)")
        resolution = sr / n
        if abs(got - freq) <= resolution:
            continue
        if abs(got - freq / resolution) <= 1:
            fail(f"dominant_frequency(...) returned {got:g} for a {freq:g} Hz tone: that is the "
                 f"index of the FFT bin; multiply by sample_rate / len(waveform) for Hz")
        if abs(got - freq / sr) <= 1 / n:
            fail(f"dominant_frequency(...) returned {got:g} for a {freq:g} Hz tone: that is in "
                 f"cycles per SAMPLE; pass d=1 / sample_rate to torch.fft.rfftfreq to get Hz")
        if abs(got - 2 * math.pi * freq) <= 2 * math.pi * resolution:
            fail(f"dominant_frequency(...) returned {got:g}, an angular frequency (rad/s); the "
                 f"exercise asks for Hz")
        if abs(got - 3.1 * freq) <= 2 * resolution:
            fail(f"dominant_frequency(...) returned {got:g} Hz for a tone whose strongest "
                 f"component is {freq:g} Hz: take the bin with the LARGEST magnitude")
        fail(f"dominant_frequency(wave, {sr}) returned {got:g} Hz for a tone of {freq:g} Hz "
             f"({n} samples, so the answer should be within {resolution:g} Hz)")
    return "440, 1250 and 300 Hz tones recognised"


@register("0.3", "channel_stats gives per-channel mean and standard deviation",
          hint="convert to float on the [0, 1] scale first, then reduce over every axis except the "
               "channel axis, so that each channel gets one mean and one std.")
def check_channel_stats(channel_stats) -> str:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 8, 8), generator=gen, dtype=torch.uint8)
    images[:, 1] //= 2  # make the channels differ so mixed-up dimensions show
    images[:, 2] = images[:, 2] // 4 + 100
    got = call(channel_stats, images)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"channel_stats(images) returned {type(got).__name__}; a pair (mean, std) was expected")
    mean, std = got
    x = images.float() / 255.0
    for name, value, want in (("mean", mean, x.mean(dim=(0, 2, 3))),
                              ("std", std, x.std(dim=(0, 2, 3)))):
        label = f"channel_stats(images)[{0 if name == 'mean' else 1}] ({name})"
        expect_tensor(label, value)
        if value.shape != (3,):
            fail(f"{label} has shape {tuple(value.shape)} but (3,) was expected, one value per "
                 f"channel: reduce over every axis of the (N, 3, H, W) batch except the "
                 f"channel axis")
        if not value.is_floating_point():
            fail(f"{label} has dtype {value.dtype}; convert the images to float before averaging")
        if value.max() > 1.5:
            fail(f"{label} is {value.tolist()}: on the 0-255 scale; divide by 255 first so "
                 f"pixel values are in [0, 1]")
        # population or sample std are both fine for this many pixels
        expect_close(label, value.float(), want, atol=2e-3, rtol=0)
    return "mean and std of 3 channels match"


@register("0.4", "predicted shares of samples with 0, 1, 2 and 3 good modalities",
          hint="for each number of clean modalities, ask how likely a sample is to have exactly "
               "that many, given how often each modality is clean and that they are drawn "
               "independently. Any well-formed prediction passes: the measurement, not the check, "
               "says whether you were right.")
def check_clean_share_prediction(predicted_shares) -> str:
    shares = expect_fractions("predicted_shares", predicted_shares, range(4),
                              "the share of samples with that many clean modalities")
    total = sum(shares.values())
    if not math.isclose(total, 1.0, abs_tol=0.01):
        fail(f"predicted_shares add up to {total:.3f}, but every sample has 0, 1, 2 or 3 clean "
             f"modalities, exactly one of them, so the four shares must add up to 1")
    recorded = ", ".join(f"{k}: {v:.1%}" for k, v in shares.items())
    return f"recorded ({recorded}); the next cell counts them"
