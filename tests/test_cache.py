"""Tests for the on-disk cache (mmcourse/cache.py): keys, atomic writes, and a cache that cannot
be read or written costing time only (tests/test_course_data.py and tests/test_features.py test
the two kinds of entry it holds)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from mmcourse import cache
from mmcourse.data import course


def test_entry_path_key_covers_args_versions_and_code(tmp_path):
    entry = course.__file__
    base = cache.entry_path("datasets", tmp_path, {"a": 1, "b": 2}, entry, "seed0", ".pkl")
    assert base.parent == tmp_path / "datasets" and base.name.startswith("seed0-")
    assert base == cache.entry_path("datasets", tmp_path, {"b": 2, "a": 1}, entry, "seed0", ".pkl")
    others = {cache.entry_path("datasets", tmp_path, {"a": 2, "b": 2}, entry, "seed0", ".pkl"),
              cache.entry_path("datasets", tmp_path, {"a": 1, "b": 2}, entry, "seed0", ".pkl",
                               versions=("2.0",))}
    assert base not in others and len(others) == 2
    names = {p.name for p in cache.source_files(entry)}
    assert {"course.py", "render.py", "attributes.py", "cache.py", "checks.py"} <= names


def test_read_entry_missing_invalid_and_unreadable(tmp_path):
    path = tmp_path / "entry.pkl"
    assert cache.read_entry(path, lambda p: 1) is None
    path.write_bytes(pickle.dumps([1, 2]))
    assert cache.read_entry(path, lambda p: pickle.loads(p.read_bytes())) == [1, 2]
    assert cache.read_entry(path, lambda p: pickle.loads(p.read_bytes()),
                            valid=lambda v: isinstance(v, dict)) is None
    assert not path.exists()  # not a valid entry: deleted, so that it is rebuilt

    path.write_bytes(b"kept")

    def no_permission(p):
        raise PermissionError(13, "Permission denied", str(p))

    assert cache.read_entry(path, no_permission) is None
    assert path.read_bytes() == b"kept"  # somebody else's entry: left alone


def test_a_cache_that_cannot_be_written_costs_time_only(tmp_path, monkeypatch):
    def read_only(path, save):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache, "write_atomic", read_only)
    with pytest.warns(RuntimeWarning, match="could not write the cache entry .*Permission denied"):
        got = course.make_course_dataset(seed=7, size={"test": 12}, cache=tmp_path)
    want = course.make_course_dataset(seed=7, size={"test": 12}, cache=False)
    np.testing.assert_array_equal(got["test"].images, want["test"].images)
    assert not (tmp_path / "datasets").exists()


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "kind" / "entry.bin"

    def fails(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.write_atomic(path, fails)
    assert list(path.parent.iterdir()) == []
    cache.write_atomic(path, lambda tmp: tmp.write_bytes(b"whole"))
    assert path.read_bytes() == b"whole" and list(path.parent.iterdir()) == [path]
