"""Tests for the course dataset generator (mmcourse/data/course.py).

Kept fast: small size mappings only (the "small" preset is exercised by tests/test_cli.py).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mmcourse.data import course, render
from mmcourse.data.course import (COLOURS, DIGITS, MODALITY_NAMES, POSITIONS, QUALITY_LEVELS,
                                  QUALITY_PROBS, SAMPLE_RATE, SHAPES, SIZES, CourseSplit,
                                  make_course_dataset)
from mmcourse.data.dataset import MultimodalDataset, collate_multimodal

SMALL = {"train": 200, "val": 50, "test": 50}
ALL_CLEAN = {"image": (1, 0, 0, 0), "audio": (1, 0, 0), "text": (1, 0, 0, 0)}
FIELDS = ("images", "audio", "audio_lengths", "labels", "attributes", "quality")


def _named(text: str, words: dict[str, tuple[str, ...]]) -> set[str]:
    """The classes whose words (see render._SHAPE_WORDS / _DIGIT_WORDS) appear in ``text``."""
    low = text.lower()
    return {cls for cls, options in words.items()
            if any(re.search(rf"\b{re.escape(w)}\b", low) for w in options)}


def _assert_same(a: CourseSplit, b: CourseSplit) -> None:
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.texts == b.texts
    assert a.classes == b.classes


@pytest.fixture(scope="module")
def splits() -> dict[str, CourseSplit]:
    return make_course_dataset(seed=0, size=SMALL)


@pytest.fixture(scope="module")
def big_train() -> CourseSplit:
    """Enough samples to look at frequencies (about 1.5 s to generate)."""
    return make_course_dataset(seed=3, size={"train": 1500})["train"]


@pytest.fixture(scope="module")
def digits() -> CourseSplit:
    return make_course_dataset(seed=0, size={"train": 200}, image_source="digits")["train"]


# -- shapes and dtypes -----------------------------------------------------------------------------

def test_split_names_and_lengths(splits):
    assert list(splits) == ["train", "val", "test"]
    for name, n in SMALL.items():
        split = splits[name]
        assert isinstance(split, CourseSplit)
        assert split.name == name
        assert len(split) == n


@pytest.mark.parametrize("name", list(SMALL))
def test_field_shapes_and_dtypes(splits, name):
    s = splits[name]
    n = SMALL[name]
    assert s.images.shape == (n, 3, 32, 32) and s.images.dtype == np.uint8
    assert s.audio.ndim == 2 and s.audio.shape[0] == n and s.audio.dtype == np.int16
    assert s.audio.shape[1] == s.audio_lengths.max()
    assert s.audio_lengths.shape == (n,) and s.audio_lengths.dtype == np.int64
    assert s.labels.shape == (n,) and s.labels.dtype == np.int64
    assert s.attributes.shape == (n, 4) and s.attributes.dtype == np.int64
    assert s.quality.shape == (n, 3) and s.quality.dtype == np.int8
    assert isinstance(s.texts, list) and len(s.texts) == n
    assert all(isinstance(t, str) for t in s.texts)
    assert s.classes == SHAPES
    assert s.sample_rate == SAMPLE_RATE


def test_value_ranges(splits):
    s = splits["train"]
    np.testing.assert_array_equal(s.attributes[:, 0], s.labels)
    for col, n_values in enumerate((len(SHAPES), len(COLOURS), len(SIZES), len(POSITIONS))):
        assert s.attributes[:, col].min() >= 0 and s.attributes[:, col].max() < n_values
    for j, m in enumerate(MODALITY_NAMES):
        assert s.quality[:, j].min() >= 0 and s.quality[:, j].max() < len(QUALITY_LEVELS[m])
    # 200 samples cover every class
    assert set(s.labels.tolist()) == set(range(len(SHAPES)))


def test_string_size_uses_split_sizes(monkeypatch):
    assert course.SPLIT_SIZES["small"] == (4000, 1000, 1000)
    monkeypatch.setitem(course.SPLIT_SIZES, "small", (12, 5, 7))
    out = make_course_dataset(seed=0, size="small")
    assert {k: len(v) for k, v in out.items()} == {"train": 12, "val": 5, "test": 7}
    default = make_course_dataset(seed=0)  # the default size is "small"
    assert {k: len(v) for k, v in default.items()} == {"train": 12, "val": 5, "test": 7}


def test_only_the_named_splits():
    out = make_course_dataset(seed=0, size={"test": 10})
    assert list(out) == ["test"] and len(out["test"]) == 10


def test_numpy_integer_seed_and_count():
    a = make_course_dataset(seed=np.int64(5), size={"train": np.int32(10)})["train"]
    b = make_course_dataset(seed=5, size={"train": 10})["train"]
    _assert_same(a, b)


# -- determinism --------------------------------------------------------------------------------

def test_same_seed_same_data(splits):
    again = make_course_dataset(seed=0, size=SMALL, cache=False)  # generated again, not loaded
    for name in SMALL:
        _assert_same(splits[name], again[name])


# -- the on-disk cache ----------------------------------------------------------------------------

def test_a_cached_dataset_is_the_generated_one(tmp_path):
    first = make_course_dataset(seed=4, size={"train": 30, "test": 20}, cache=tmp_path)
    (entry,) = (tmp_path / "datasets").iterdir()
    assert entry.name.startswith("seed4-") and entry.suffix == ".pkl"
    loaded = make_course_dataset(seed=4, size={"train": 30, "test": 20}, cache=tmp_path)
    fresh = make_course_dataset(seed=4, size={"train": 30, "test": 20}, cache=False)
    assert list(loaded) == list(fresh) == ["train", "test"]
    for name in fresh:
        _assert_same(loaded[name], fresh[name])
        _assert_same(first[name], fresh[name])
        assert loaded[name].name == name
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [entry.name]  # no new entry


def test_every_argument_is_part_of_the_dataset_cache_key(tmp_path):
    base = dict(seed=4, size={"train": 20}, cache=tmp_path)
    make_course_dataset(**base)
    for change in (dict(seed=5), dict(size={"train": 21}), dict(size={"val": 20}),
                   dict(image_source="digits"), dict(quality_probs=ALL_CLEAN)):
        make_course_dataset(**{**base, **change})
    assert len(list((tmp_path / "datasets").iterdir())) == 6
    clean = make_course_dataset(**base, quality_probs=ALL_CLEAN)["train"]  # loaded from the cache
    assert (clean.quality == 0).all()


def test_a_corrupted_dataset_cache_file_is_rebuilt(tmp_path):
    fresh = make_course_dataset(seed=4, size={"test": 20}, cache=False)
    make_course_dataset(seed=4, size={"test": 20}, cache=tmp_path)
    (entry,) = (tmp_path / "datasets").iterdir()
    for junk in (b"not a pickle", b"\x80\x05N."):  # unreadable; a readable pickle of None
        entry.write_bytes(junk)
        rebuilt = make_course_dataset(seed=4, size={"test": 20}, cache=tmp_path)
        _assert_same(rebuilt["test"], fresh["test"])
        assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == [entry.name]
        _assert_same(make_course_dataset(seed=4, size={"test": 20}, cache=tmp_path)["test"],
                     fresh["test"])


def test_no_cache_writes_nothing_and_large_datasets_are_not_kept(tmp_path, monkeypatch):
    make_course_dataset(seed=4, size={"test": 20}, cache=False)
    monkeypatch.setattr(course, "CACHE_MAX_SAMPLES", 30)
    make_course_dataset(seed=4, size={"train": 20, "test": 11}, cache=tmp_path)  # 31 > 30
    assert not (tmp_path / "datasets").exists()
    make_course_dataset(seed=4, size={"train": 20, "test": 10}, cache=tmp_path)  # 30: kept
    assert len(list((tmp_path / "datasets").iterdir())) == 1


def test_the_default_dataset_cache_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CACHE", str(tmp_path))
    make_course_dataset(seed=6, size={"test": 5})
    assert [p.name[:6] for p in (tmp_path / "datasets").iterdir()] == ["seed6-"]


def test_different_seed_different_data(splits):
    other = make_course_dataset(seed=1, size=SMALL)
    for name in SMALL:
        a, b = splits[name], other[name]
        assert not np.array_equal(a.images, b.images)
        assert not np.array_equal(a.labels, b.labels)
        assert a.texts != b.texts


def test_splits_differ_from_each_other(splits):
    assert not np.array_equal(splits["val"].images, splits["test"].images)
    assert splits["val"].texts != splits["test"].texts


def test_test_split_independent_of_train_size():
    a = make_course_dataset(seed=0, size={"train": 100, "test": 40})["test"]
    b = make_course_dataset(seed=0, size={"train": 300, "val": 20, "test": 40})["test"]
    _assert_same(a, b)


def test_modalities_use_independent_streams():
    """Changing the quality levels leaves the attributes and, for samples whose quality did not
    change, the rendered content untouched."""
    default = make_course_dataset(seed=2, size={"train": 150})["train"]
    clean = make_course_dataset(seed=2, size={"train": 150}, quality_probs=ALL_CLEAN)["train"]
    np.testing.assert_array_equal(default.labels, clean.labels)
    np.testing.assert_array_equal(default.attributes, clean.attributes)

    img_q = default.quality_names("image")
    same = img_q == "clean"
    assert same.any() and (~same).any()
    np.testing.assert_array_equal(default.images[same], clean.images[same])
    diff = np.abs(default.images.astype(int) - clean.images.astype(int))
    for level in ("noisy", "occluded", "missing"):
        idx = np.flatnonzero(img_q == level)
        assert len(idx) > 0, level
        assert all(diff[i].max() > 0 for i in idx), level
    noisy = img_q == "noisy"
    assert diff[noisy].mean() > 20  # heavy noise, not a few grey levels

    aud_q = default.quality_names("audio")
    for i in np.flatnonzero(aud_q == "clean"):
        np.testing.assert_array_equal(default.waveform(i), clean.waveform(i))
    for i in np.flatnonzero(aud_q == "noisy"):
        n = min(default.audio_lengths[i], clean.audio_lengths[i])
        assert not np.array_equal(default.audio[i, :n], clean.audio[i, :n])

    txt_q = default.quality_names("text")
    for i in np.flatnonzero(txt_q == "informative"):
        assert default.texts[i] == clean.texts[i]


# -- quality levels -----------------------------------------------------------------------------

@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_quality_frequencies(big_train, modality):
    names = big_train.quality_names(modality)
    for level, p in zip(QUALITY_LEVELS[modality], QUALITY_PROBS[modality]):
        freq = float(np.mean(names == level))
        assert abs(freq - p) < 0.05, (modality, level, freq, p)


def test_quality_names(splits):
    s = splits["train"]
    for j, m in enumerate(MODALITY_NAMES):
        names = s.quality_names(m)
        assert names.shape == (len(s),)
        assert set(names.tolist()) <= set(QUALITY_LEVELS[m])
        assert [QUALITY_LEVELS[m][q] for q in s.quality[:, j]] == names.tolist()


def test_present_marks_missing(big_train):
    present = big_train.present
    assert set(present) == set(MODALITY_NAMES)
    for m in MODALITY_NAMES:
        assert present[m].dtype == bool and present[m].shape == (len(big_train),)
        np.testing.assert_array_equal(present[m], big_train.quality_names(m) != "missing")
        assert (~present[m]).any() and present[m].any()


def test_missing_modalities_are_empty(big_train):
    s = big_train
    present = s.present
    miss_img = ~present["image"]
    assert not s.images[miss_img].any()
    # a present image is never all black (the background is at least 0.05 * 255)
    assert all(s.images[i].any() for i in np.flatnonzero(present["image"]))
    miss_aud = ~present["audio"]
    assert not s.audio[miss_aud].any()
    assert all(s.waveform(i).any() for i in np.flatnonzero(present["audio"]))
    for i in range(len(s)):
        assert (s.texts[i] == "") == (not present["text"][i])


def test_all_clean_override():
    s = make_course_dataset(seed=4, size={"train": 200}, quality_probs=ALL_CLEAN)["train"]
    assert not s.quality.any()
    assert all(v.all() for v in s.present.values())
    assert set(s.quality_names("image").tolist()) == {"clean"}
    assert set(s.quality_names("text").tolist()) == {"informative"}
    for text, label in zip(s.texts, s.labels):
        assert _named(text, render._SHAPE_WORDS) == {SHAPES[label]}, text


def test_partial_override_keeps_other_defaults():
    s = make_course_dataset(seed=4, size={"train": 300},
                            quality_probs={"text": [0, 0, 0, 1.0]})["train"]
    assert s.texts == [""] * 300
    assert not s.present["text"].any()
    assert s.present["image"].any() and (~s.present["image"]).any()  # image still at defaults


# -- texts --------------------------------------------------------------------------------------

def test_texts_match_their_quality(big_train):
    s = big_train
    levels = s.quality_names("text")
    seen = set()
    for text, label, level in zip(s.texts, s.labels, levels):
        named = _named(text, render._SHAPE_WORDS)
        right = SHAPES[label]
        if level == "informative":
            assert named == {right}, text
        elif level == "misleading":
            assert len(named) == 1 and right not in named, (text, right)
        elif level == "uninformative":
            assert named == set(), text
            assert any(re.search(rf"\b{w}\b", text.lower()) for w in render._VAGUE_WORDS), text
        else:
            assert text == ""
        seen.add(level)
    assert seen == set(QUALITY_LEVELS["text"])


def test_misleading_texts_cover_many_wrong_classes(big_train):
    s = big_train
    wrong = [_named(t, render._SHAPE_WORDS).pop()
             for t, lv in zip(s.texts, s.quality_names("text")) if lv == "misleading"]
    assert len(set(wrong)) >= 6


def test_texts_mention_the_attributes(big_train):
    s = big_train
    for text, (_, colour, size, position) in zip(s.texts, s.attributes):
        if not text:
            continue
        low = text.lower()
        assert list(COLOURS)[colour] in low, text
        # one template ("{colour} {shape} {where}") leaves the size out; none names a wrong one
        sizes_named = _named(text, render._SIZE_WORDS)
        assert sizes_named <= {SIZES[size]}, text
        phrases = render._POSITION_PHRASES[POSITIONS[position]]
        assert any(p in low for p in phrases), text
    with_size = [t for t in s.texts if _named(t, render._SIZE_WORDS)]
    assert len(with_size) > 0.7 * sum(map(bool, s.texts))


def test_texts_read_well(big_train):
    texts = [t for t in big_train.texts if t]
    for t in texts:
        assert t[0].isupper(), t
        assert t.endswith(".") and not t.endswith(".."), t
        assert "  " not in t and t == t.strip(), t
        assert not re.search(r"\ba [aeiou]", t, re.IGNORECASE), t  # "a orange"
        assert not re.search(r"\ban [^aeiou\W]", t, re.IGNORECASE), t  # "an red"
        assert "{" not in t and "}" not in t, t
    joined = " ".join(texts).lower()
    assert "an orange" in joined and "an object" in joined
    assert len(set(texts)) > 0.8 * len(texts)  # varied wording


# -- audio --------------------------------------------------------------------------------------

def test_audio_lengths_and_padding(big_train):
    s = big_train
    seconds = s.audio_lengths / SAMPLE_RATE
    # the shortest clip: a two-note melody of 0.07 s notes with 0.01 s gaps and tail (0.17 s);
    # the longest: 0.05 s lead, four 0.12 s notes with 0.03 s gaps, 0.05 s tail (0.70 s)
    assert seconds.min() >= 0.16 and seconds.max() <= 0.75
    missing = ~s.present["audio"]
    assert (s.audio_lengths[missing] == int(0.3 * SAMPLE_RATE)).all()
    for i in range(len(s)):
        assert not s.audio[i, s.audio_lengths[i]:].any(), i


def test_waveform(splits):
    s = splits["train"]
    i = int(np.flatnonzero(s.present["audio"])[0])
    w = s.waveform(i)
    assert w.dtype == np.float32 and w.shape == (s.audio_lengths[i],)
    assert np.abs(w).max() <= 1.0 and np.abs(w).max() > 0.05
    np.testing.assert_allclose(w * 32768.0, s.audio[i, : s.audio_lengths[i]])


# -- digits -------------------------------------------------------------------------------------

def test_digits_classes_and_images(digits):
    assert digits.classes == DIGITS
    assert digits.images.shape == (200, 3, 32, 32) and digits.images.dtype == np.uint8
    assert set(digits.labels.tolist()) == set(range(len(DIGITS)))
    # clean digit images differ from the shapes ones drawn from the same seed
    shapes = make_course_dataset(seed=0, size={"train": 200})["train"]
    np.testing.assert_array_equal(digits.labels, shapes.labels)
    clean = np.flatnonzero(digits.quality_names("image") == "clean")
    assert not np.array_equal(digits.images[clean], shapes.images[clean])
    assert all(digits.images[i].any() for i in clean)


def test_digits_texts_name_digits(digits):
    levels = digits.quality_names("text")
    words = render._DIGIT_WORDS
    for text, label, level in zip(digits.texts, digits.labels, levels):
        named = _named(text, words)
        right = DIGITS[label]
        if level == "informative":
            assert right in named, text
        elif level == "misleading":
            assert named - {right}, (text, right)
        assert not _named(text, render._SHAPE_WORDS), text
    informative = [t for t, lv in zip(digits.texts, levels) if lv == "informative"]
    assert any("digit" in t or "number" in t for t in informative)


def test_digits_texts_read_well(digits):
    for t in digits.texts:
        if t:
            assert not re.search(r"\ban one\b", t, re.IGNORECASE), t
            assert not re.search(r"\ba [aeiou](?!ne\b)", t, re.IGNORECASE), t


def test_digits_texts_name_only_their_digit(digits):
    """No template may contain a digit word ("one red star" would name digit 1)."""
    for text, label, level in zip(digits.texts, digits.labels, digits.quality_names("text")):
        named = _named(text, render._DIGIT_WORDS)
        if level == "informative":
            assert named == {DIGITS[label]}, text
        elif level == "uninformative":
            assert named == set(), text


def test_fixed_words_name_no_class():
    """Templates, size words, position phrases and vague words never contain a class word."""
    fixed = list(render._TEMPLATES) + list(render._VAGUE_WORDS) + list(COLOURS)
    fixed += [w for ws in render._SIZE_WORDS.values() for w in ws]
    fixed += [p for ps in render._POSITION_PHRASES.values() for p in ps]
    for text in fixed:
        assert not _named(text, render._SHAPE_WORDS), text
        assert not _named(text, render._DIGIT_WORDS), text


def test_digits_caption(digits):
    s, c, z, p = digits.attributes[0]
    assert digits.caption(0) == f"{SIZES[z]} {list(COLOURS)[c]} {DIGITS[s]} {POSITIONS[p]}"


# -- CourseSplit helpers -------------------------------------------------------------------------

def test_caption(splits):
    s = splits["train"]
    for i in range(5):
        shape, colour, size, position = s.attributes[i]
        assert s.caption(i) == (f"{SIZES[size]} {list(COLOURS)[colour]} {SHAPES[shape]} "
                                f"{POSITIONS[position]}")
    # the caption does not depend on the text's quality
    i = int(np.flatnonzero(s.quality_names("text") == "missing")[0])
    assert SHAPES[s.labels[i]] in s.caption(i)


def test_repr(splits):
    r = repr(splits["val"])
    assert "'val'" in r and "50 samples" in r and "8 classes" in r and "8000 Hz" in r


def test_post_init_rejects_mismatched_lengths(splits):
    s = splits["val"]
    with pytest.raises(ValueError, match=r"CourseSplit 'val': 50 labels but 49 images"):
        CourseSplit(images=s.images[:49], audio=s.audio, audio_lengths=s.audio_lengths,
                    texts=s.texts, labels=s.labels, attributes=s.attributes, quality=s.quality,
                    name="val")


def test_as_dataset(splits):
    s = splits["val"]
    ds = s.as_dataset()
    assert isinstance(ds, MultimodalDataset)
    assert len(ds) == len(s)
    assert ds.modalities == MODALITY_NAMES
    for i in range(len(s)):
        item = ds[i]
        img = item["image"]
        assert img.dtype == torch.float32 and img.shape == (3, 32, 32)
        assert img.min() >= 0 and img.max() <= 1
        torch.testing.assert_close(img, torch.from_numpy(s.images[i]).float() / 255)
        audio = item["audio"]
        assert audio.dtype == torch.float32 and audio.dim() == 1
        assert audio.shape[0] == s.audio_lengths[i]
        assert isinstance(item["text"], str) and item["text"] == s.texts[i]
        assert item["label"].item() == s.labels[i]
        assert item["present"] == {m: bool(s.present[m][i]) for m in MODALITY_NAMES}
        if not item["present"]["image"]:
            assert not img.any()


def test_as_dataset_subset_of_modalities(splits):
    ds = splits["val"].as_dataset(("image", "text"))
    item = ds[0]
    assert set(item) == {"image", "text", "label", "present"}
    assert set(item["present"]) == {"image", "text"}


def test_collate_course_items(splits):
    s = splits["val"]
    ds = s.as_dataset()
    idx = [0, 1, 2, 3, 4]
    batch = collate_multimodal([ds[i] for i in idx])
    assert batch["image"].shape == (5, 3, 32, 32)
    lengths = s.audio_lengths[idx]
    assert batch["audio"].shape == (5, lengths.max())
    assert batch["audio_lengths"].tolist() == lengths.tolist()
    for row, i in enumerate(idx):
        assert not batch["audio"][row, lengths[row]:].any()
    assert batch["text"] == [s.texts[i] for i in idx]
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == s.labels[idx].tolist()
    for m in MODALITY_NAMES:
        assert batch["present"][m].dtype == torch.bool
        assert batch["present"][m].tolist() == s.present[m][idx].tolist()


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        make_course_dataset(seed=seed, size={"train": 5})


def test_unknown_size():
    with pytest.raises(ValueError, match=r"unknown size 'tiny'; expected one of \['small', "
                                         r"'medium', 'large'\]"):
        make_course_dataset(seed=0, size="tiny")


@pytest.mark.parametrize("size", [{}, {"training": 10}, {"train": 0}, {"train": -3},
                                  {"train": 1.5}, {"train": "10"}, {"train": 10, "dev": 5}])
def test_bad_size_mapping(size):
    with pytest.raises(ValueError, match="size must map 'train'/'val'/'test' to positive integers"):
        make_course_dataset(seed=0, size=size)


def test_unknown_image_source():
    with pytest.raises(ValueError, match="unknown image_source 'mnist'; expected 'shapes' or 'digits'"):
        make_course_dataset(seed=0, size={"train": 5}, image_source="mnist")


def test_quality_probs_unknown_modality():
    with pytest.raises(ValueError, match="quality_probs names unknown modality 'video'"):
        make_course_dataset(seed=0, size={"train": 5}, quality_probs={"video": (1.0,)})


@pytest.mark.parametrize("probs", [(1, 0, 0), (0.5, 0.5, 0.5, -0.5), (0.5, 0.2, 0.2, 0.2),
                                   (0.1, 0.1, 0.1, 0.1)])
def test_quality_probs_bad_values(probs):
    with pytest.raises(ValueError, match=r"quality_probs\['image'\] must be 4 non-negative numbers "
                                         r"summing to 1"):
        make_course_dataset(seed=0, size={"train": 5}, quality_probs={"image": probs})


@pytest.mark.parametrize("modalities", [("image", "video"), (), ("Image",)])
def test_as_dataset_bad_modalities(splits, modalities):
    with pytest.raises(ValueError, match="modalities must be a non-empty subset of"):
        splits["val"].as_dataset(modalities)


def test_quality_names_unknown_modality(splits):
    with pytest.raises(KeyError, match="unknown modality 'video'"):
        splits["val"].quality_names("video")
