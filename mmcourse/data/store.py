"""The course dataset on disk: ``save_dataset``, ``load_dataset``, ``check_dataset``.

Layout of a dataset folder (every file is deterministic, so the same seed gives the same bytes):

    manifest.json          what was generated (seed, size, classes, levels) and the sha256 of
                           every other file
    train/images.npy       uint8 (N, 3, 32, 32)
    train/audio.npy        int16 (N, L_max), zero-padded clips
    train/audio_lengths.npy  int64 (N,)
    train/labels.npy       int64 (N,)
    train/attributes.npy   int64 (N, 4): shape, colour, size, position
    train/quality.npy      int8 (N, 3): image, audio, text quality levels
    train/texts.json       list of N strings
    val/... test/...       the same
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mmcourse.data.course import (ATTRIBUTES, COLOURS, POSITIONS, QUALITY_LEVELS, SAMPLE_RATE,
                                  SIZES, CourseSplit)

FORMAT_VERSION = 1
ARRAYS = ("images", "audio", "audio_lengths", "labels", "attributes", "quality")


class DatasetError(Exception):
    """A dataset folder is missing, incomplete or corrupted; the message names the file."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dump_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def save_dataset(splits: dict[str, CourseSplit], out: str | Path, overwrite: bool = False,
                 seed: int | None = None, size: str | None = None) -> dict:
    """Write ``splits`` (from :func:`make_course_dataset`) to the folder ``out``.

    Refuses to write over an existing dataset unless ``overwrite``. Returns the manifest (a dict,
    also written to ``out/manifest.json``).
    """
    from mmcourse import __version__

    if not splits:
        raise ValueError("save_dataset needs at least one split, got none")
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset (manifest.json); pass overwrite=True "
                              f"(or --overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    files = {}
    for name, split in splits.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for array in ARRAYS:
            np.save(folder / f"{array}.npy", np.ascontiguousarray(getattr(split, array)),
                    allow_pickle=False)
        _dump_json(list(split.texts), folder / "texts.json")
        for fname in [f"{a}.npy" for a in ARRAYS] + ["texts.json"]:
            files[f"{name}/{fname}"] = _sha256(folder / fname)
    first = next(iter(splits.values()))
    manifest = {
        "name": "mmcourse course dataset",
        "format_version": FORMAT_VERSION,
        "generator": f"mmcourse {__version__}",
        "seed": seed,
        "size": size,
        "classes": list(first.classes),
        "attributes": {"shape": list(first.classes), "colour": list(COLOURS),
                       "size": list(SIZES), "position": list(POSITIONS)},
        "attribute_columns": list(ATTRIBUTES),
        "quality_levels": {m: list(v) for m, v in QUALITY_LEVELS.items()},
        "sample_rate": first.sample_rate,
        "splits": {name: len(split) for name, split in splits.items()},
        "files": files,
    }
    _dump_json(manifest, out / "manifest.json")
    return manifest


def _read_manifest(folder: Path) -> dict:
    if not folder.exists():
        raise DatasetError(f"dataset folder {folder} does not exist; create one with "
                           f"`mmcourse data --out {folder}`")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    path = folder / "manifest.json"
    if not path.exists():
        raise DatasetError(f"{path} is missing: {folder} is not a course dataset folder "
                           f"(create one with `mmcourse data --out {folder}`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is corrupted: not valid JSON ({err})") from err
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path} is corrupted: a JSON object was expected, got "
                           f"{type(manifest).__name__}")
    missing_keys = [k for k in ("format_version", "files", "splits", "classes") if k not in manifest]
    if missing_keys:
        raise DatasetError(f"{path} lacks the keys {missing_keys}")
    if not isinstance(manifest["files"], dict) or not isinstance(manifest["splits"], dict):
        raise DatasetError(f"{path} is corrupted: 'files' and 'splits' must be JSON objects")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(f"{path} has format version {manifest['format_version']}; this "
                           f"mmcourse reads version {FORMAT_VERSION}: regenerate the dataset")
    # json.dumps(sort_keys=True) stored the splits alphabetically; give them back as train, val, test
    manifest["splits"] = dict(sorted(manifest["splits"].items(),
                                     key=lambda kv: ("train", "val", "test", kv[0]).index(kv[0])))
    return manifest


def check_dataset(folder: str | Path) -> str:
    """Validate a dataset folder against the checksums in its manifest.

    Returns a one-line summary when every file is present and intact; raises
    :class:`DatasetError` naming every missing or corrupted file otherwise.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    missing, corrupted = [], []
    for rel, expected in sorted(manifest["files"].items()):
        path = folder / rel
        if not path.is_file():
            missing.append(rel)
        elif _sha256(path) != expected:
            corrupted.append(rel)
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if corrupted:
        problems.append("corrupted (checksum differs from manifest.json): " + ", ".join(corrupted))
    if problems:
        raise DatasetError(f"dataset {folder} is damaged; " + "; ".join(problems) + ". " +
                           _regenerate_hint(manifest, folder))
    counts = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    return (f"{folder}: OK, all {len(manifest['files'])} data files match the checksums in "
            f"manifest.json (seed {manifest.get('seed')}, {counts})")


def _regenerate_hint(manifest: dict, folder: Path) -> str:
    """How to rebuild the dataset described by ``manifest`` (a command when one exists)."""
    seed, size = manifest.get("seed"), manifest.get("size")
    if seed is not None and size in ("small", "medium", "large"):
        return f"Regenerate it with `mmcourse data --seed {seed} --size {size} --out {folder} --overwrite`"
    return (f"Regenerate it as it was made: make_course_dataset(seed={seed}, "
            f"size={manifest['splits']}) and save_dataset(..., overwrite=True)")


def load_dataset(folder: str | Path, verify: bool = True) -> dict[str, CourseSplit]:
    """Read a dataset written by :func:`save_dataset`; ``verify`` checks the checksums first."""
    folder = Path(folder)
    if verify:
        check_dataset(folder)
    manifest = _read_manifest(folder)
    splits = {}
    for name in manifest["splits"]:
        arrays = {}
        for array in ARRAYS:
            path = folder / name / f"{array}.npy"
            try:
                arrays[array] = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DatasetError(f"cannot read {path}: {err}") from err
        path = folder / name / "texts.json"
        try:
            texts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DatasetError(f"cannot read {path}: {err}") from err
        try:
            splits[name] = CourseSplit(texts=texts, classes=tuple(manifest["classes"]),
                                       sample_rate=manifest.get("sample_rate", SAMPLE_RATE),
                                       name=name, **arrays)
        except ValueError as err:
            raise DatasetError(f"dataset {folder}, split {name!r}: {err}") from err
    return splits
