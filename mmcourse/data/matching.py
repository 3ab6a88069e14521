"""Image-text matching on the course data: "does this text describe this image?"

A task with *synergy*: the answer is in neither modality alone. Every image is paired with a
description of its own object; in about half of the pairs (the *mismatches*) one attribute of the
description (the colour, by default) is changed to a wrong value, and the label says whether the
text still describes the image. An image alone, or a text alone, says nothing about the label
(each is equally likely to come with a match or a mismatch): only comparing the colour seen with
the colour named answers it.

That makes it the course's example of where joint (end-to-end) training pays: encoders trained
*alone* on the shape label (:mod:`mmcourse.features`) have no reason to keep the colour, so fusion
of their frozen features stays near chance, while encoders trained together on the matching label
learn to keep exactly what the comparison needs (notebook 07).

    pairs = make_matching_task(seed=0)              # {"train", "val", "test"}: CourseSplits
    pairs["train"].labels[:6], pairs["train"].texts[0]
    # array([1, 0, 0, 1, 1, 0]), 'A small blue ring in the top left.'

Images are clean or noisy (never occluded or missing: the attribute must be visible), every text
names the true shape, and the audio is left as the course made it (the task does not use it).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmcourse.data.attributes import (
    ATTRIBUTES, COLOURS, DIGITS, POSITIONS, QUALITY_LEVELS, SHAPES, SIZES)
from mmcourse.data.course import CourseSplit, make_course_dataset
from mmcourse.data.render import write_texts

#: The label names of the matching task: 0 = the text does not describe the image, 1 = it does.
MATCH_CLASSES = ("mismatch", "match")
#: The attributes a mismatch can change, with how many values each has.
MATCHABLE = {"colour": len(COLOURS), "size": len(SIZES), "position": len(POSITIONS)}
#: Image quality of the task's images: clean or noisy, never occluded or missing.
IMAGE_QUALITY = (0.7, 0.3, 0.0, 0.0)


def make_matching_task(seed: int = 0, size: str | Mapping[str, int] = "small",
                       attribute: str = "colour", match_rate: float = 0.5,
                       ) -> dict[str, CourseSplit]:
    """The matching task on freshly generated course data.

    Args:
        seed: the course data's seed and the pairing's (the same seed, the same bytes).
        size: as in :func:`~mmcourse.data.course.make_course_dataset` ("small": 4000 / 1000 /
            1000 pairs).
        attribute: what a mismatched text gets wrong: "colour" (the default), "size" or
            "position". ("shape" would not be a synergy task: the frozen encoders know it.)
        match_rate: the fraction of pairs whose text describes the image, in (0, 1).

    Returns:
        ``{"train", "val", "test"}`` (or the splits ``size`` names) -> :class:`CourseSplit`
        whose ``labels`` are 0 (mismatch) / 1 (match), ``classes`` is :data:`MATCH_CLASSES`,
        ``texts`` are the (possibly wrong) descriptions and ``attributes`` still describe the
        *image*.
    """
    if attribute not in MATCHABLE:
        raise ValueError(f"attribute must be one of {sorted(MATCHABLE)}, got {attribute!r}"
                         + (" (the frozen encoders know the shape: that is no synergy task)"
                            if attribute == "shape" else ""))
    if isinstance(match_rate, bool) or not isinstance(match_rate, (int, float)) \
            or not 0.0 < match_rate < 1.0:
        raise ValueError(f"match_rate must be a number strictly between 0 and 1, got {match_rate!r}")
    text_clean = tuple(1.0 if level == "informative" else 0.0 for level in QUALITY_LEVELS["text"])
    course = make_course_dataset(seed, size, quality_probs={"image": IMAGE_QUALITY,
                                                            "text": text_clean})
    return {name: pair_texts(split, np.random.SeedSequence([int(seed), 7, index]), attribute,
                             match_rate)
            for index, (name, split) in enumerate(course.items())}


def pair_texts(split: CourseSplit, seed: int | np.random.SeedSequence = 0,
               attribute: str = "colour", match_rate: float = 0.5) -> CourseSplit:
    """A copy of ``split`` with new texts and match labels (see :func:`make_matching_task`).

    Every text is written afresh from the image's attributes; in the mismatched pairs
    ``attribute`` is first moved to a different value, drawn uniformly. Returns a new
    :class:`CourseSplit`; ``split`` is not changed.
    """
    if attribute not in MATCHABLE:
        raise ValueError(f"attribute must be one of {sorted(MATCHABLE)}, got {attribute!r}")
    if split.classes not in (SHAPES, DIGITS):
        raise ValueError(f"pair_texts needs a course split labelled by shape (classes {SHAPES} "
                         f"or {DIGITS}), got classes {split.classes}: is it already a matching "
                         f"split?")
    rng = np.random.default_rng(seed)
    n = len(split)
    match = rng.random(n) < match_rate
    column = ATTRIBUTES.index(attribute)
    described = split.attributes.copy()
    shift = rng.integers(1, MATCHABLE[attribute], n)  # never 0: a mismatch is always wrong
    described[~match, column] = (described[~match, column] + shift[~match]) % MATCHABLE[attribute]
    informative = QUALITY_LEVELS["text"].index("informative")
    quality = split.quality.copy()
    quality[:, 2] = informative
    texts = write_texts(described, quality[:, 2], rng, split.classes)
    return CourseSplit(images=split.images, audio=split.audio, audio_lengths=split.audio_lengths,
                       texts=texts, labels=match.astype(np.int64), attributes=split.attributes,
                       quality=quality, classes=MATCH_CLASSES, sample_rate=split.sample_rate,
                       name=split.name)
