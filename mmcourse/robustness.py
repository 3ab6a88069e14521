"""Robustness to corrupted modalities, measured: corruption at a chosen severity, and the area
under the accuracy-vs-severity curve (notebook 06, ``mmcourse bench fusion``).

    probs = corruption_probs("text", 0.5)   # half the texts corrupted, never missing
    make_course_dataset(seed=0, size={"test": 1000}, quality_probs={"text": probs})
    area_under_curve([0.9, 0.8, 0.7, 0.6, 0.5])   # accuracies at SEVERITIES -> 0.7
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS, QUALITY_PROBS

#: The shares of corrupted samples a robustness curve is measured at.
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def corruption_probs(modality: str, severity: float) -> tuple[float, ...]:
    """Quality probabilities for ``modality`` (in ``QUALITY_LEVELS[modality]`` order) with a share
    ``severity`` in [0, 1] of corrupted samples: clean ``1 - severity``, the corrupted levels in
    their usual proportions, missing 0."""
    if modality not in QUALITY_LEVELS:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITY_NAMES}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    levels, usual = QUALITY_LEVELS[modality], QUALITY_PROBS[modality]
    corrupted = [i for i, name in enumerate(levels) if name not in ("clean", "informative", "missing")]
    total = sum(usual[i] for i in corrupted)
    probs = [0.0] * len(levels)
    probs[0] = 1.0 - severity
    for i in corrupted:
        probs[i] = severity * usual[i] / total
    return tuple(probs)


def area_under_curve(accuracies: Sequence[float], severities: Sequence[float] = SEVERITIES) -> float:
    """Trapezoid-rule area under accuracy vs severity, divided by the severity range (1 = always
    right at every severity)."""
    x = np.asarray(severities, dtype=float)
    y = np.asarray(accuracies, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))
