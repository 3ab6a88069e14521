"""mmcourse.robustness: corruption at a chosen severity, the area under a robustness curve."""
from __future__ import annotations

import pytest

from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS, QUALITY_PROBS
from mmcourse.robustness import SEVERITIES, area_under_curve, corruption_probs


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_corruption_probs(modality):
    levels = QUALITY_LEVELS[modality]
    for s in SEVERITIES:
        probs = corruption_probs(modality, s)
        assert len(probs) == len(levels) and sum(probs) == pytest.approx(1.0)
        assert probs[levels.index("missing")] == 0.0
        assert probs[0] == pytest.approx(1 - s)
    # corrupted levels keep their usual proportions
    worst = corruption_probs(modality, 1.0)
    corrupted = [i for i in range(1, len(levels)) if levels[i] != "missing"]
    ratios = {worst[i] / QUALITY_PROBS[modality][i] for i in corrupted}
    assert max(ratios) == pytest.approx(min(ratios))


def test_corruption_probs_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        corruption_probs("video", 0.5)
    with pytest.raises(ValueError, match=r"severity must be in \[0, 1\], got 1.5"):
        corruption_probs("image", 1.5)


def test_area_under_curve():
    assert area_under_curve([1, 1, 1, 1, 1]) == pytest.approx(1.0)
    assert area_under_curve([1.0, 0.75, 0.5, 0.25, 0.0]) == pytest.approx(0.5)
    assert area_under_curve([0.8, 0.4], severities=(0.0, 1.0)) == pytest.approx(0.6)
