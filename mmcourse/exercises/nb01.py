"""Checks for the exercises of notebook 01 (images: from pixels to features)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from mmcourse.exercises.core import call, expect_close, expect_tensor, fail, register
from mmcourse.exercises.library_calls import call_without
from mmcourse.exercises.predictions import expect_fractions, recorded


def _as_int(name: str, value) -> int:
    """``value`` as an int, failing for floats with a fraction, tensors of several values, etc."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"{name} returned a {type(value).__name__}; a whole number (int) was expected")
    if isinstance(value, float):
        if not value.is_integer():
            fail(f"{name} returned {value:g}, which is not a whole number: a size counts pixels; "
                 f"round DOWN with integer division // (that is what the convolution does)")
        value = int(value)
    return value


@register("1.1", "conv_output_size follows the convolution size formula",
          hint="use the formula of section 2 with the kernel size replaced by the span of the "
               "dilated kernel (its taps are dilation pixels apart), and round down with integer "
               "division.")
def check_conv_output_size(conv_output_size) -> str:
    cases = [(32, 3, 1, 1, 1), (32, 3, 2, 1, 1), (32, 7, 2, 3, 1), (28, 5, 1, 0, 1),
             (33, 3, 2, 0, 1), (32, 3, 1, 2, 2), (10, 4, 3, 1, 1), (7, 3, 2, 1, 1)]
    # Typical slips, each recognised when the answer follows it on every case.
    slips = [
        (lambda n, k, s, p, d: (n + 2 * p - d * (k - 1) - 1) // s,
         "the formula ends with + 1 (the first position of the kernel counts too)"),
        (lambda n, k, s, p, d: (n + p - d * (k - 1) - 1) // s + 1,
         "padding adds pixels on BOTH sides, 2 * padding in all"),
        (lambda n, k, s, p, d: (n - d * (k - 1) - 1) // s + 1,
         "the padding is missing: it adds 2 * padding pixels"),
        (lambda n, k, s, p, d: (n + 2 * p - k) // s + 1,
         "with a dilation d the kernel spans d * (kernel - 1) + 1 pixels"),
        (lambda n, k, s, p, d: math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1,
         "round DOWN (//): a kernel that would stick out past the padded border is not applied"),
    ]
    answers = []
    for size, k, s, p, d in cases:
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        want = conv(torch.zeros(1, 1, size, size)).shape[-1]
        name = f"conv_output_size({size}, kernel={k}, stride={s}, padding={p}, dilation={d})"
        got = _as_int(name, call(conv_output_size, size, k, s, p, d))
        answers.append((name, got, want, (size, k, s, p, d)))
    wrong = [a for a in answers if a[1] != a[2]]
    if wrong:
        name, got, want, _ = wrong[0]
        for formula, why in slips:
            if all(g == formula(*args) for _, g, _, args in answers):
                fail(f"{name} returned {got} but {want} was expected: {why}")
        fail(f"{name} returned {got} but nn.Conv2d gives {want}")
    return f"{len(cases)} layer settings agree with nn.Conv2d"


@register("1.2", "normalize standardises each channel",
          hint="mean and std must line up with the channel axis (axis 1) of x to broadcast; as (3,) "
               "tensors they line up with the last axis. Return a new tensor, x unchanged.")
def check_normalize(normalize) -> str:
    gen = torch.Generator().manual_seed(1)
    # width 3 on purpose: mean of shape (3,) then broadcasts along the width without an error
    x = torch.rand(4, 3, 5, 3, generator=gen)
    mean = torch.tensor([0.2, 0.5, 0.7])
    std = torch.tensor([0.1, 0.2, 0.4])
    want = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    original = x.clone()
    from torchvision.transforms import functional as F1
    from torchvision.transforms.v2 import functional as F2

    ready_made = {F2.normalize: "torchvision.transforms.v2.functional.normalize",
                  F2.normalize_image: "torchvision.transforms.v2.functional.normalize",
                  F1.normalize: "torchvision.transforms.functional.normalize"}
    got = call_without(normalize, ready_made, x, mean, std)
    if not torch.equal(x, original):
        fail("normalize(x, mean, std) changed x in place: the caller's images are now "
             "normalised too; return a new tensor computed from x instead of changing x with the "
             "in-place methods (the ones whose name ends with an underscore, such as sub_)")
    expect_tensor("normalize(x, mean, std)", got, shape=tuple(x.shape))
    wrong_axis = (x - mean) / std  # broadcast along the last dim (width)
    if torch.allclose(got, wrong_axis, atol=1e-5):
        fail("normalize(x, mean, std) used mean[j] and std[j] for pixel COLUMN j instead of "
             "channel j: mean of shape (3,) broadcasts along the last dimension; give it "
             "singleton axes so that it lines up with the channel axis (axis 1)")
    if torch.allclose(got, (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1) ** 2, atol=1e-5):
        fail("normalize(x, mean, std) divided by the variance (std ** 2); divide by std")
    if torch.allclose(got, x / std.view(1, 3, 1, 1) - mean.view(1, 3, 1, 1), atol=1e-5):
        fail("normalize(x, mean, std) computed x / std - mean; subtract the mean first: "
             "(x - mean) / std")
    expect_close("normalize(x, mean, std)", got, want, atol=1e-5)
    # batch of one image without a batch dimension is not required; a second batch size is
    y = torch.rand(2, 3, 4, 4, generator=gen)
    expect_close("normalize(y, mean, std)", call(normalize, y, mean, std),
                 (y - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), atol=1e-5)
    return "per-channel (x - mean) / std, input left unchanged"


@register("1.3", "conv_params counts the weights and biases of a convolution",
          hint="count the weights of one filter (it sees every input channel through a kernel x "
               "kernel window), multiply by the number of filters, then add the biases if there are "
               "any.")
def check_conv_params(conv_params) -> str:
    cases = [(3, 32, 3, True), (32, 64, 3, False), (1, 8, 5, True), (64, 128, 1, True),
             (16, 4, 7, False)]
    for cin, cout, k, bias in cases:
        want = sum(p.numel() for p in nn.Conv2d(cin, cout, k, bias=bias).parameters())
        name = f"conv_params({cin}, {cout}, {k}, bias={bias})"
        got = _as_int(name, call_without(conv_params, {nn.Conv2d.__init__: "torch.nn.Conv2d (the "
                                                       "layer itself)"}, cin, cout, k, bias=bias))
        if got == want:
            continue
        if bias and got == want - cout:
            fail(f"{name} returned {got} but {want} was expected: add one bias per output "
                 f"channel ({cout})")
        if not bias and got == want + cout:
            fail(f"{name} returned {got} but {want} was expected: with bias=False there are no "
                 f"biases to count")
        if got in (cout * k * k + (cout if bias else 0), cin * cout * k + (cout if bias else 0)):
            fail(f"{name} returned {got} but {want} was expected: a filter has in_channels x "
                 f"kernel x kernel weights")
        fail(f"{name} returned {got} but nn.Conv2d has {want} parameters")
    return f"{len(cases)} layers counted like nn.Conv2d"


@register("1.4", "most_confused_pair finds the largest off-diagonal entry",
          hint="on a copy, make the diagonal unable to win, find the largest remaining entry, and "
               "turn its flat index into (row, column).")
def check_most_confused_pair(most_confused_pair) -> str:
    cm = torch.tensor([[50, 2, 0, 1],
                       [3, 40, 9, 0],
                       [0, 4, 45, 1],
                       [7, 0, 0, 60]])
    original = cm.clone()
    got = call(most_confused_pair, cm)
    if not torch.equal(cm, original):
        fail("most_confused_pair(cm) changed the confusion matrix passed to it; work on a copy "
             "(cm.clone())")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"most_confused_pair(cm) returned {got!r}; a pair (true class, predicted class) of "
             f"ints was expected")
    pair = tuple(_as_int("most_confused_pair(cm)", v) for v in got)
    if pair == (3, 3):
        fail("most_confused_pair(cm) returned (3, 3), a diagonal entry: those are the CORRECT "
             "predictions; ignore the diagonal")
    if pair == (2, 1):
        fail("most_confused_pair(cm) returned (2, 1) but (1, 2) was expected: rows are true "
             "classes and columns predictions, so return (row, column)")
    if pair == (3, 0):
        fail("most_confused_pair(cm) returned (3, 0); that entry (7) is not the largest off the "
             "diagonal: cm[1, 2] = 9 is")
    if pair != (1, 2):
        fail(f"most_confused_pair(cm) returned {pair} but (1, 2) was expected (cm[1, 2] = 9 true "
             f"class 1 predicted as class 2)")
    other = torch.tensor([[5, 0, 6], [0, 9, 0], [1, 0, 3]])
    pair = tuple(_as_int("most_confused_pair(cm)", v) for v in call(most_confused_pair, other))
    if pair != (0, 2):
        fail(f"most_confused_pair returned {pair} for a 3x3 matrix whose largest off-diagonal "
             f"entry is at (0, 2)")
    return "found (true 1, predicted 2) and (true 0, predicted 2)"


@register("1.5", "predicted test accuracy per image quality",
          hint="for each quality level ask what is left of the shape in the picture: all of it, "
               "the shape under noise, a corner of it, nothing. Any well-formed prediction "
               "passes: the measurement, not the check, says whether you were right.")
def check_quality_prediction(predicted_accuracy) -> str:
    from mmcourse.data.course import QUALITY_LEVELS

    accuracy = expect_fractions("predicted_accuracy", predicted_accuracy, QUALITY_LEVELS["image"],
                                "the test accuracy on images of that quality")
    return recorded(accuracy, "the next cell measures them")
