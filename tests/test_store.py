"""Tests for the on-disk dataset format (mmcourse/data/store.py)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmcourse.data.course import DIGITS, SHAPES, make_course_dataset
from mmcourse.data.store import (ARRAYS, FORMAT_VERSION, DatasetError, check_dataset,
                                 load_dataset, save_dataset)

SIZE = {"train": 30, "val": 10, "test": 10}
FILES = sorted(f"{split}/{name}" for split in SIZE
               for name in [f"{a}.npy" for a in ARRAYS] + ["texts.json"])


def _all_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _flip_byte(path: Path, position: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def splits():
    return make_course_dataset(seed=0, size=SIZE)


@pytest.fixture(scope="module")
def saved(splits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "dataset"
    save_dataset(splits, out, seed=0, size="custom")
    return out


@pytest.fixture()
def copy(saved, tmp_path) -> Path:
    """A private copy of the saved dataset that a test may damage."""
    return Path(shutil.copytree(saved, tmp_path / "copy"))


# -- round trip ---------------------------------------------------------------------------------

def test_layout_and_manifest(saved):
    files = _all_files(saved)
    assert sorted(files) == sorted(FILES + ["manifest.json"])
    manifest = json.loads(files["manifest.json"])
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["seed"] == 0 and manifest["size"] == "custom"
    assert manifest["splits"] == SIZE
    assert manifest["classes"] == list(SHAPES)
    assert manifest["sample_rate"] == 8000
    assert sorted(manifest["files"]) == FILES
    assert all(len(h) == 64 for h in manifest["files"].values())
    assert manifest["attribute_columns"] == ["shape", "colour", "size", "position"]


def test_save_returns_the_manifest(splits, tmp_path):
    manifest = save_dataset(splits, tmp_path / "ds", seed=0)
    assert manifest == json.loads((tmp_path / "ds" / "manifest.json").read_text(encoding="utf-8"))


def test_check_ok(saved):
    summary = check_dataset(saved)
    assert "OK" in summary and str(saved) in summary
    assert f"all {len(FILES)} data files" in summary
    assert "seed 0" in summary and "train 30, val 10, test 10" in summary


def test_round_trip(splits, saved):
    loaded = load_dataset(saved)
    assert list(loaded) == list(splits)
    for name, split in splits.items():
        got = loaded[name]
        assert got.name == name
        for array in ARRAYS:
            a, b = getattr(split, array), getattr(got, array)
            assert a.dtype == b.dtype and a.shape == b.shape, array
            np.testing.assert_array_equal(a, b, err_msg=array)
        assert got.texts == split.texts
        assert got.classes == split.classes == SHAPES
        assert got.sample_rate == split.sample_rate


def test_round_trip_keeps_digit_classes(splits, tmp_path):
    digits = {"val": dataclasses.replace(splits["val"], classes=DIGITS)}
    save_dataset(digits, tmp_path / "d")
    assert load_dataset(tmp_path / "d")["val"].classes == DIGITS


def test_round_trip_unicode_text(splits, tmp_path):
    split = splits["val"]
    texts = list(split.texts)
    texts[0] = "Ein großer Kreis – «ça va» ✓"
    save_dataset({"val": dataclasses.replace(split, texts=texts)}, tmp_path / "u")
    assert load_dataset(tmp_path / "u")["val"].texts[0] == texts[0]


# -- determinism --------------------------------------------------------------------------------

def test_same_seed_same_bytes(saved, tmp_path):
    again = tmp_path / "again"
    save_dataset(make_course_dataset(seed=0, size=SIZE), again, seed=0, size="custom")
    a, b = _all_files(saved), _all_files(again)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel


def test_other_seed_other_bytes(saved, tmp_path):
    other = tmp_path / "other"
    save_dataset(make_course_dataset(seed=1, size=SIZE), other, seed=1, size="custom")
    a, b = _all_files(saved), _all_files(other)
    assert sorted(a) == sorted(b)
    for split in SIZE:
        for name in ("images.npy", "audio.npy", "labels.npy", "texts.json"):
            assert a[f"{split}/{name}"] != b[f"{split}/{name}"], (split, name)
    assert a["manifest.json"] != b["manifest.json"]


# -- damage -------------------------------------------------------------------------------------

def test_missing_file(copy):
    (copy / "train" / "labels.npy").unlink()
    with pytest.raises(DatasetError, match=r"missing: train/labels\.npy") as info:
        check_dataset(copy)
    assert "corrupted" not in str(info.value)
    # a custom size has no CLI preset: the hint says how to rebuild it from Python
    assert "make_course_dataset(seed=0" in str(info.value) and "overwrite=True" in str(info.value)


def test_damage_hint_names_the_cli_command_for_a_preset_size(splits, tmp_path):
    out = tmp_path / "preset"
    save_dataset(splits, out, seed=3, size="small")
    (out / "val" / "texts.json").unlink()
    with pytest.raises(DatasetError) as info:
        check_dataset(out)
    assert f"mmcourse data --seed 3 --size small --out {out} --overwrite" in str(info.value)


def test_corrupted_file(copy):
    _flip_byte(copy / "val" / "images.npy")
    with pytest.raises(DatasetError, match=r"corrupted \(checksum differs from manifest\.json\): "
                                           r"val/images\.npy") as info:
        check_dataset(copy)
    assert "missing" not in str(info.value)


def test_corrupted_texts(copy):
    path = copy / "test" / "texts.json"
    path.write_text(path.read_text(encoding="utf-8").replace("a", "e", 1), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test/texts\.json"):
        check_dataset(copy)


def test_every_problem_named(copy):
    (copy / "test" / "audio.npy").unlink()
    _flip_byte(copy / "train" / "quality.npy")
    _flip_byte(copy / "val" / "attributes.npy")
    with pytest.raises(DatasetError) as info:
        check_dataset(copy)
    msg = str(info.value)
    assert "missing: test/audio.npy" in msg
    assert "train/quality.npy" in msg and "val/attributes.npy" in msg


def test_missing_manifest(copy):
    (copy / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"manifest\.json is missing.*not a course dataset folder"):
        check_dataset(copy)


@pytest.mark.parametrize("content", [b"{not json", b'{"files": {', b"\xff\xfe\x00garbage"])
def test_manifest_not_json(copy, content):
    (copy / "manifest.json").write_bytes(content)
    with pytest.raises(DatasetError, match=r"manifest\.json is corrupted: not valid JSON"):
        check_dataset(copy)


def test_manifest_missing_keys(copy):
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"lacks the keys \['files'\]"):
        check_dataset(copy)


def test_manifest_other_format_version(copy):
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DatasetError, match=f"format version {FORMAT_VERSION + 1}.*regenerate"):
        check_dataset(copy)


def test_folder_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=r"nowhere does not exist.*mmcourse data --out"):
        check_dataset(missing)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(missing)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(missing, verify=False)


def test_folder_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        check_dataset(path)


# -- loading damaged folders ---------------------------------------------------------------------

def test_load_verifies(copy):
    _flip_byte(copy / "train" / "images.npy")
    with pytest.raises(DatasetError, match=r"train/images\.npy"):
        load_dataset(copy)
    with pytest.raises(DatasetError, match=r"train/images\.npy"):
        load_dataset(copy, verify=True)
    # without verification the flipped pixel goes unnoticed
    loaded = load_dataset(copy, verify=False)
    assert loaded["train"].images.shape == (30, 3, 32, 32)


def test_load_unreadable_array(copy):
    path = copy / "val" / "labels.npy"
    path.write_bytes(path.read_bytes()[:20])  # truncated header
    with pytest.raises(DatasetError, match=r"cannot read .*labels\.npy"):
        load_dataset(copy, verify=False)


def test_load_inconsistent_lengths(copy):
    np.save(copy / "val" / "labels.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"val/labels\.npy: expected int64 \(10,\), got int64 \(3,\)"):
        load_dataset(copy, verify=False)


# -- writing ------------------------------------------------------------------------------------

def test_overwrite_protection(splits, copy):
    before = _all_files(copy)
    with pytest.raises(FileExistsError, match=r"already holds a dataset.*overwrite=True"):
        save_dataset(splits, copy)
    assert _all_files(copy) == before  # nothing touched
    other = make_course_dataset(seed=1, size={"val": 10})
    manifest = save_dataset(other, copy, overwrite=True, seed=1)
    assert manifest["seed"] == 1 and manifest["splits"] == {"val": 10}
    assert "seed 1" in check_dataset(copy)
    loaded = load_dataset(copy)
    assert list(loaded) == ["val"]
    np.testing.assert_array_equal(loaded["val"].images, other["val"].images)


def test_save_into_existing_empty_folder(splits, tmp_path):
    save_dataset({"test": splits["test"]}, tmp_path)  # the folder exists but holds no manifest
    assert "OK" in check_dataset(tmp_path)


def test_save_onto_a_file(splits, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        save_dataset(splits, path)


def test_save_nothing(tmp_path):
    with pytest.raises(ValueError, match="at least one split"):
        save_dataset({}, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


# -- strict: every file of the format, inside the folder, with the right contents ---------------

def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _replace_array(folder: Path, rel: str, array: np.ndarray) -> None:
    """Write ``array`` to ``rel`` and update its checksum, so only the contents are wrong."""
    import hashlib

    np.save(folder / rel, array)
    digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    _edit_manifest(folder, lambda m: m["files"].__setitem__(rel, digest))


def test_a_file_removed_with_its_manifest_entry_is_missing(copy):
    (copy / "train" / "quality.npy").unlink()
    _edit_manifest(copy, lambda m: m["files"].pop("train/quality.npy"))
    for read in (check_dataset, load_dataset):
        with pytest.raises(DatasetError, match=r"is damaged; missing: train/quality\.npy\."):
            read(copy)


def test_a_file_without_a_manifest_entry_is_unverified(copy):
    _edit_manifest(copy, lambda m: m["files"].pop("val/texts.json"))
    with pytest.raises(DatasetError, match=r"not listed in manifest\.json \(no checksum to "
                                           r"verify\): val/texts\.json"):
        check_dataset(copy)


def test_a_manifest_entry_outside_the_format_is_named(copy):
    (copy / "train" / "notes.npy").write_bytes(b"x")
    _edit_manifest(copy, lambda m: m["files"].__setitem__("train/notes.npy", "0" * 64))
    with pytest.raises(DatasetError, match=r"not part of the format .*: train/notes\.npy"):
        check_dataset(copy)


@pytest.mark.parametrize("rel", ["../secret.npy", "/etc/hostname", "train/../../secret.npy",
                                 "C:/secret.npy", "..\\secret.npy"])
def test_manifest_paths_must_stay_inside_the_folder(copy, rel):
    _edit_manifest(copy, lambda m: m["files"].__setitem__(rel, "0" * 64))
    for read in (check_dataset, load_dataset):
        with pytest.raises(DatasetError, match=re.escape(f"names files outside the dataset folder: "
                                                         f"[{rel!r}]") + ".*no '..', no absolute"):
            read(copy)


@pytest.mark.parametrize("name", ["../x", "", "a/b", "."])
def test_split_names_must_be_plain_folder_names(copy, splits, tmp_path, name):
    _edit_manifest(copy, lambda m: m["splits"].__setitem__(name, 3))
    with pytest.raises(DatasetError, match=rf"'splits' must map simple names .*got {name!r}: 3"):
        check_dataset(copy)
    with pytest.raises(ValueError, match=rf"split names must be plain folder names .*got {name!r}"):
        save_dataset({name: splits["val"]}, tmp_path / "out")


@pytest.mark.parametrize("rel, array, message", [
    ("train/images.npy", lambda a: a.astype(np.float32),
     r"train/images\.npy: expected uint8 \(30, 3, 32, 32\), got float32 \(30, 3, 32, 32\)"),
    ("val/attributes.npy", lambda a: a[:, :3],
     r"val/attributes\.npy: expected int64 \(10, 4\), got int64 \(10, 3\)"),
    ("val/audio.npy", lambda a: a[:, :, None],
     r"val/audio\.npy: expected int16 \(10, L\), got int16 \(10, \d+, 1\)"),
    ("train/labels.npy", lambda a: np.where(np.arange(len(a)) == 0, 8, a),
     r"train/labels\.npy: labels must be indices in \[0, 8\), got values from \d to 8"),
    ("test/attributes.npy", lambda a: a - np.array([0, 1, 0, 0]) * (a[:, 1:2] + 1),
     r"test/attributes\.npy: attributes column 1 \(colour\) must be indices in \[0, 6\), got "
     r"values from -\d+ to -1"),
    ("test/quality.npy", lambda a: (a + np.array([0, 0, 4], dtype=np.int8)).astype(np.int8),
     r"test/quality\.npy: quality column 2 \(text\) must be indices in \[0, 4\)"),
    ("val/audio_lengths.npy", lambda a: a + 100000,
     r"val/audio_lengths\.npy: clip lengths must be in \[0, \d+\] \(the width of audio\.npy\)"),
])
def test_load_validates_dtypes_shapes_and_ranges(copy, rel, array, message):
    _replace_array(copy, rel, array(np.load(copy / rel)))
    for read in (check_dataset, load_dataset):
        with pytest.raises(DatasetError, match=message):
            read(copy)


def test_load_validates_texts(copy):
    (copy / "val" / "texts.json").write_text(json.dumps(["a"] * 9 + [3]))
    with pytest.raises(DatasetError, match=r"val/texts\.json: expected a list of 10 strings, got "
                                           r"a list of 10 items that are not all strings"):
        load_dataset(copy, verify=False)
