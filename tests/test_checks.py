"""mmcourse.checks: check_int, check_texts, describe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcourse.checks import check_int, check_texts, describe


def test_check_int_accepts_integers_at_or_above_the_minimum():
    assert check_int(3, "epochs") == 3
    assert check_int(np.int64(0), "seed", minimum=0) == 0
    assert check_int(None, "patience", allow_none=True) is None
    assert check_int(2, "max_length", minimum=2) == 2


@pytest.mark.parametrize("value", [0, -1, 1.0, "3", True, np.bool_(True), None])
def test_check_int_names_the_argument_the_expectation_and_the_value(value):
    with pytest.raises(ValueError) as err:
        check_int(value, "epochs")
    assert str(err.value) == f"epochs must be a positive integer, got {value!r}"


def test_check_int_messages():
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer, got -1$"):
        check_int(-1, "seed", minimum=0)
    with pytest.raises(ValueError, match=r"^size must be a positive integer \(pixels\) or None, "
                                         r"got 0$"):
        check_int(0, "size", allow_none=True, unit="pixels")
    with pytest.raises(ValueError, match=r"^max_length must be an integer >= 2 \(room\), got 1$"):
        check_int(1, "max_length", minimum=2, unit="room")


def test_check_texts():
    assert check_texts(("a", "")) == ["a", ""]
    with pytest.raises(TypeError, match="single str"):
        check_texts("a red circle")
    with pytest.raises(TypeError, match="got int"):
        check_texts(3)
    with pytest.raises(ValueError, match="captions is empty"):
        check_texts([], "captions")
    with pytest.raises(TypeError, match=r"item 1 is a NoneType \(2 non-str item\(s\) in all\)"):
        check_texts(["a", None, 3])


def test_describe():
    assert describe(torch.zeros(2, 3)) == "tensor of shape (2, 3) and dtype torch.float32"
    assert describe(np.zeros((2,), dtype=np.uint8)) == "numpy array of shape (2,) and dtype uint8"
    assert describe("x" * 50) == f"str {'x' * 37 + '...'!r}"
    assert describe(3) == "int"
