"""mmcourse.features: frozen unimodal encoders and their features, with a disk cache.

Everything runs on a tiny version of the course data (64/32/32 samples, one epoch per encoder),
so that the whole pipeline takes a few seconds.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mmcourse
import mmcourse.features as features_module
from mmcourse.data.course import make_course_dataset
from mmcourse.data.tensors import TensorBatches
from mmcourse.features import (CourseFeatures, FeatureSplit, _cache_path, _source_files,
                               course_features, make_encoder)
from mmcourse.training import UnimodalClassifier

SIZE = {"train": 64, "val": 32, "test": 32}
EPOCHS = {"image": 1, "audio": 1, "text": 1}
MODALITIES = ("image", "audio", "text")
D = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits():
    return make_course_dataset(seed=0, size=SIZE)


@pytest.fixture(scope="module")
def feats(splits, tmp_path_factory):
    """Built from given splits (which are never cached, even with a cache folder)."""
    folder = tmp_path_factory.mktemp("given-splits-cache")
    result = course_features(seed=0, splits=splits, epochs=EPOCHS, device="cpu", cache=folder)
    assert not any(folder.rglob("*")), "features of given splits must not be cached"
    return result


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("features-cache")


@pytest.fixture(scope="module")
def cached(cache_dir):
    """Built from size= and data_seed=, stored in the cache folder."""
    return course_features(seed=0, size=SIZE, data_seed=0, epochs=EPOCHS, device="cpu",
                           cache=cache_dir)


def assert_same_features(a: CourseFeatures, b: CourseFeatures) -> None:
    assert a.dims == b.dims and a.classes == b.classes and list(a.splits) == list(b.splits)
    for name in a.splits:
        x, y = a[name], b[name]
        assert torch.equal(x.labels, y.labels)
        assert np.array_equal(x.quality, y.quality)
        for m in a.modalities:
            assert torch.equal(x.pooled[m], y.pooled[m]), (name, m)
            assert torch.equal(x.sequences[m][0], y.sequences[m][0]), (name, m)
            assert torch.equal(x.sequences[m][1], y.sequences[m][1]), (name, m)
            assert torch.equal(x.present[m], y.present[m]), (name, m)


# ---------------------------------------------------------------- what comes out

def test_dims_modalities_and_models(feats):
    assert isinstance(feats, CourseFeatures)
    assert feats.dims == {m: D for m in MODALITIES} and feats.modalities == MODALITIES
    assert len(feats.classes) == 8 and feats.seed == 0
    assert list(feats.splits) == ["train", "val", "test"]
    for m, model in feats.models.items():
        assert isinstance(model, UnimodalClassifier) and model.modality == m
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())  # frozen
    assert len(feats.tokenizer) > 4
    with pytest.raises(KeyError, match=r"unknown split 'train2'; have \['train', 'val', 'test'\]"):
        feats["train2"]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_shapes_of_a_split(feats, splits, split):
    fs = feats[split]
    n = SIZE[split]
    assert isinstance(fs, FeatureSplit) and len(fs) == n
    assert fs.labels.dtype == torch.int64 and fs.labels.shape == (n,)
    assert torch.equal(fs.labels, torch.from_numpy(splits[split].labels).long())
    assert fs.quality.shape == (n, 3) and fs.quality.dtype == np.int8
    assert np.array_equal(fs.quality, splits[split].quality)
    for m in MODALITIES:
        assert fs.pooled[m].shape == (n, D) and fs.pooled[m].dtype == torch.float32
        assert torch.isfinite(fs.pooled[m]).all()
        seq, pos = fs.sequences[m]
        assert seq.ndim == 3 and seq.shape[0] == n and seq.shape[2] == D
        assert pos.shape == seq.shape[:2] and pos.dtype == torch.bool
        assert torch.isfinite(seq).all()
        assert fs.present[m].dtype == torch.bool and fs.present[m].shape == (n,)
        assert np.array_equal(fs.present[m].numpy(), splits[split].present[m])
    assert fs.sequences["image"][1].all()  # images have no padding


def test_pooled_features_are_the_frozen_encoders_output(feats, splits):
    model = feats.models["image"]
    images = torch.from_numpy(splits["test"].images[:5]).float() / 255.0
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(images), feats["test"].pooled["image"][:5])


def test_loader_batches(feats):
    loader = feats.loader("train", batch_size=16, shuffle=True, seed=1)
    assert isinstance(loader, TensorBatches) and len(loader) == 4
    batch = next(iter(loader))
    assert set(batch) == {"image", "audio", "text", "label", "present"}
    assert all(batch[m].shape == (16, D) for m in MODALITIES)
    assert set(batch["present"]) == set(MODALITIES) and batch["label"].shape == (16,)
    again = next(iter(feats.loader("train", batch_size=16, shuffle=True, seed=1)))
    assert torch.equal(batch["label"], again["label"])
    # whole split, in order
    labels = torch.cat([b["label"] for b in feats.loader("test", batch_size=10)])
    assert torch.equal(labels, feats["test"].labels)
    # sequences: (features, positions, pooled) triples
    seq_batch = next(iter(feats["val"].loader(sequences=True, batch_size=8)))
    for m in MODALITIES:
        seq, pos, pooled = seq_batch[m]
        assert torch.equal(pooled, feats["val"].pooled[m][:8])
        assert seq.shape[0] == 8 and seq.shape[2] == D and pos.shape == seq.shape[:2]
    # a subset of modalities
    sub = next(iter(feats.loader("val", modalities=("audio", "text"))))
    assert set(sub) == {"audio", "text", "label", "present"}
    assert set(sub["present"]) == {"audio", "text"}
    with pytest.raises(ValueError, match=r"unknown modality 'video'; expected some of \['image'"):
        feats.loader("val", modalities=("video",))


def test_unimodal_accuracy(feats, splits):
    acc = feats.unimodal_accuracy("test")
    assert set(acc) == set(MODALITIES)
    assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in acc.values())
    assert feats.unimodal_accuracy(splits["test"]) == acc  # a CourseSplit is encoded first
    # the accuracy of each frozen model's own head on the features
    m = "text"
    pred = feats.models[m].head(feats["test"].pooled[m]).argmax(1)
    assert acc[m] == pytest.approx((pred == feats["test"].labels).float().mean().item())


def test_encode_another_split(feats, splits):
    again = feats.encode(splits["test"], batch_size=7)
    for m in MODALITIES:
        torch.testing.assert_close(again.pooled[m], feats["test"].pooled[m])
        torch.testing.assert_close(again.sequences[m][0], feats["test"].sequences[m][0])
        assert torch.equal(again.sequences[m][1], feats["test"].sequences[m][1])
    other = make_course_dataset(seed=0, size={"test": 40},
                                quality_probs={"image": (0, 0, 0, 1)})["test"]
    fs = feats.encode(other)
    assert len(fs) == 40 and all(fs.pooled[m].shape == (40, D) for m in MODALITIES)
    assert np.array_equal(fs.quality, other.quality)
    assert not fs.present["image"].any()  # quality level 3 of images: missing


# ---------------------------------------------------------------- seeds and the cache

def test_the_same_seed_gives_identical_features(feats, cached):
    # one was built from given splits, the other from size= and data_seed=: same data, same seed
    assert_same_features(feats, cached)


def test_the_cache_is_loaded_without_training(cached, cache_dir, monkeypatch):
    files = list(cache_dir.rglob("*.pt"))
    assert len(files) == 1 and files[0].parent.name == "features"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached features should have been loaded, not trained")

    monkeypatch.setattr(features_module, "fit", no_training)
    start = time.perf_counter()
    loaded = course_features(seed=0, size=SIZE, data_seed=0, epochs=EPOCHS, device="cpu",
                             cache=cache_dir)
    assert time.perf_counter() - start < 5.0
    assert loaded is not cached
    assert_same_features(loaded, cached)
    assert loaded.unimodal_accuracy("test") == cached.unimodal_accuracy("test")


def test_every_argument_is_part_of_the_cache_key(tmp_path):
    base = dict(seed=0, size=SIZE, dim=64, epochs=EPOCHS, data_seed=0, device="cpu")
    paths = {_cache_path(tmp_path, base)}
    for change in (dict(seed=1), dict(size={**SIZE, "test": 33}), dict(dim=32),
                   dict(epochs={**EPOCHS, "audio": 2}), dict(data_seed=1), dict(device="cuda"),
                   dict(size="small")):
        paths.add(_cache_path(tmp_path, {**base, **change}))
    assert len(paths) == 8
    assert all(p.parent == tmp_path / "features" and p.suffix == ".pt" for p in paths)
    assert _cache_path(tmp_path, dict(base)) == _cache_path(tmp_path, dict(reversed(base.items())))


def test_the_cache_key_covers_every_module_the_features_import():
    package = Path(mmcourse.__file__).parent.resolve()
    names = {str(p.relative_to(package)) for p in _source_files()}
    # the modules split off data/course.py and encoders/text.py, the classifier the encoders
    # train inside, the training loop: a change to any of them must invalidate the cache
    assert {"features.py", "training.py", "classifier.py", "checks.py", "data/course.py",
            "data/attributes.py", "data/render.py", "data/tensors.py", "encoders/audio.py",
            "encoders/image.py", "encoders/text.py", "encoders/tokenizer.py",
            "encoders/masks.py"} <= names
    assert "speed.py" not in names and "widgets.py" not in names


def test_the_default_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MMCOURSE_CACHE", str(tmp_path))
    path = _cache_path(True, dict(seed=3, size=SIZE, dim=64, epochs=EPOCHS, data_seed=0,
                                  device="cpu"))
    assert path.parent == tmp_path / "features" and path.name.startswith("seed3-")


def test_a_corrupted_cache_file_is_rebuilt(cached, cache_dir):
    (path,) = cache_dir.rglob("*.pt")
    path.write_bytes(b"not a torch file")
    rebuilt = course_features(seed=0, size=SIZE, data_seed=0, epochs=EPOCHS, device="cpu",
                              cache=cache_dir)
    assert_same_features(rebuilt, cached)
    assert sorted(cache_dir.rglob("*")) == sorted([path.parent, path])  # no leftover temp file
    assert_same_features(torch.load(path, weights_only=False), cached)  # a valid file again


def test_splits_need_train_and_val(splits):
    with pytest.raises(ValueError, match=r"splits needs 'train' and 'val', got \['train'\]"):
        course_features(splits={"train": splits["train"]}, cache=False)


# ---------------------------------------------------------------- encoders

def test_make_encoder():
    assert make_encoder("image", 16).out_dim == 16
    assert make_encoder("audio", 8).out_dim == 8
    assert make_encoder("text", 4, vocab_size=30).out_dim == 4
    with pytest.raises(ValueError, match="the text encoder needs vocab_size"):
        make_encoder("text", 4)
    with pytest.raises(ValueError, match=r"unknown modality 'video'; expected one of"):
        make_encoder("video", 4)
