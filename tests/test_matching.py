"""The image-text matching task (mmcourse.data.matching): a synergy task on the course data."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mmcourse.data.course import COLOURS, QUALITY_LEVELS, make_course_dataset
from mmcourse.data.matching import MATCH_CLASSES, make_matching_task, pair_texts

SIZE = {"train": 1500, "test": 600}


@pytest.fixture(scope="module")
def pairs():
    return make_matching_task(seed=3, size=SIZE)


def named_colour(text: str) -> int:
    words = text.lower().replace(",", " ").replace(":", " ").replace(".", " ").split()
    hits = [i for i, c in enumerate(COLOURS) if c in words]
    assert len(hits) == 1, text
    return hits[0]


def test_labels_say_whether_the_text_names_the_image_colour(pairs):
    for split in pairs.values():
        assert split.classes == MATCH_CLASSES
        named = np.array([named_colour(t) for t in split.texts])
        assert np.array_equal(named == split.attributes[:, 1], split.labels == 1)
        assert 0.4 < split.labels.mean() < 0.6


def test_images_show_the_attribute_and_texts_are_informative(pairs):
    q = pairs["train"].quality
    image_levels = np.array(QUALITY_LEVELS["image"])[q[:, 0]]
    assert set(image_levels) <= {"clean", "noisy"}
    assert (np.array(QUALITY_LEVELS["text"])[q[:, 2]] == "informative").all()


def test_same_seed_same_bytes_and_another_seed_differs():
    a, b = make_matching_task(seed=1, size={"test": 200}), make_matching_task(seed=1, size={"test": 200})
    c = make_matching_task(seed=2, size={"test": 200})
    assert a["test"].texts == b["test"].texts and np.array_equal(a["test"].labels, b["test"].labels)
    assert a["test"].images.tobytes() == b["test"].images.tobytes()
    assert a["test"].texts != c["test"].texts


def colour_features(split):
    """Mean colour of the image's brightest pixels (the object) and the named colour, one-hot."""
    img = split.images.reshape(len(split), 3, -1).astype(np.float32) / 255
    bright = img.sum(1)
    top = np.argsort(bright, axis=1)[:, -40:]
    seen = np.take_along_axis(img, top[:, None, :], axis=2).mean(2)       # (N, 3)
    named = np.eye(len(COLOURS))[[named_colour(t) for t in split.texts]]  # (N, 6)
    both = (seen[:, :, None] * named[:, None, :]).reshape(len(split), -1)  # their products
    return seen, named, np.hstack([seen, named, both])


def probe(train, test, which: int) -> float:
    xs, ys = colour_features(train)[which], train.labels
    model = LogisticRegression(max_iter=2000).fit(xs, ys)
    return model.score(colour_features(test)[which], test.labels)


def test_each_modality_alone_is_at_chance_and_together_they_answer(pairs):
    train, test = pairs["train"], pairs["test"]
    chance = max(test.labels.mean(), 1 - test.labels.mean())
    assert probe(train, test, 0) < chance + 0.05   # the image's colour alone
    assert probe(train, test, 1) < chance + 0.05   # the named colour alone
    assert probe(train, test, 2) > 0.75            # both (a crude colour estimate: noisy images)


def test_other_attributes_and_rates():
    split = make_matching_task(seed=0, size={"test": 400}, attribute="size", match_rate=0.25)["test"]
    assert 0.15 < split.labels.mean() < 0.35
    course = make_course_dataset(seed=0, size={"test": 50})["test"]
    paired = pair_texts(course, seed=0, attribute="position")
    assert paired.images is course.images and paired.texts != course.texts
    with pytest.raises(ValueError, match="already a matching split"):
        pair_texts(paired)


@pytest.mark.parametrize("kwargs, message", [
    ({"attribute": "shape"}, "the frozen encoders know the shape"),
    ({"attribute": "colours"}, "attribute must be one of ['colour', 'position', 'size'], got 'colours'"),
    ({"match_rate": 1.0}, "match_rate must be a number strictly between 0 and 1, got 1.0"),
    ({"match_rate": True}, "match_rate must be a number strictly between 0 and 1, got True"),
])
def test_bad_knobs_are_rejected(kwargs, message):
    with pytest.raises(ValueError) as err:
        make_matching_task(seed=0, size={"test": 10}, **kwargs)
    assert message in str(err.value)
