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

``check_dataset`` (``mmcourse data --check``) and ``load_dataset`` accept exactly these files:
the manifest must list every one of them for each split and nothing else, every path in it stays
inside the folder (no ``..``, no absolute path; split names are plain folder names), and each
array must have the dtype and shape above, the manifest's sample count, and indices within their
vocabularies (labels below ``len(classes)``, each attribute and quality column below the size of
its list). Anything else is a :class:`DatasetError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from mmcourse.data.course import (ATTRIBUTES, COLOURS, POSITIONS, QUALITY_LEVELS, SAMPLE_RATE,
                                  SIZES, CourseSplit)

FORMAT_VERSION = 1
ARRAYS = ("images", "audio", "audio_lengths", "labels", "attributes", "quality")


class DatasetError(Exception):
    """A dataset folder is missing, incomplete or corrupted; the message names the file."""


#: A split name is a plain folder name: it must not climb out of the dataset folder.
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _inside(rel: str) -> bool:
    """Whether the manifest path ``rel`` stays inside the dataset folder (relative, no '..')."""
    parts = PurePosixPath(rel).parts
    return (bool(parts) and not PurePosixPath(rel).is_absolute() and "\\" not in rel
            and ":" not in rel and ".." not in parts)


def expected_files(splits) -> list[str]:
    """Every file the format holds for the split names ``splits``, as manifest paths."""
    return [f"{name}/{fname}" for name in splits
            for fname in [f"{a}.npy" for a in ARRAYS] + ["texts.json"]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dump_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def check_output_folder(out: str | Path, overwrite: bool = False) -> Path:
    """Make sure a dataset can be written to the folder ``out``, before any work is done.

    Creates the folder if needed and writes a probe file, then removes both. Raises
    ``FileExistsError`` if ``out`` already holds a dataset and not ``overwrite``,
    ``NotADirectoryError`` if it is a file, ``PermissionError`` (naming the folder) if it cannot
    be written. Returns ``out`` as a Path.
    """
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset (manifest.json); pass overwrite=True "
                              f"(or --overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    created = [p for p in (out, *out.parents) if not p.exists()]  # made for the probe, removed after
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".mmcourse-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write the dataset to {out}: {err.strerror or err}") from None
    finally:
        for folder in created:  # deepest first; a failed run leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break
    return out


def save_dataset(splits: dict[str, CourseSplit], out: str | Path, overwrite: bool = False,
                 seed: int | None = None, size: str | None = None) -> dict:
    """Write ``splits`` (from :func:`make_course_dataset`) to the folder ``out``.

    Refuses to write over an existing dataset unless ``overwrite``. Returns the manifest (a dict,
    also written to ``out/manifest.json``).
    """
    from mmcourse import __version__

    if not splits:
        raise ValueError("save_dataset needs at least one split, got none")
    bad = [name for name in splits if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"split names must be plain folder names (letters, digits, '_', '-'), "
                         f"got {bad[0]!r}")
    out = check_output_folder(out, overwrite)
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
    bad_splits = [name for name, n in manifest["splits"].items()
                  if not _SPLIT_NAME.fullmatch(name) or type(n) is not int or n < 0]
    if bad_splits:
        raise DatasetError(f"{path} is corrupted: 'splits' must map simple names (letters, digits, "
                           f"'_', '-') to sample counts, got {bad_splits[0]!r}: "
                           f"{manifest['splits'][bad_splits[0]]!r}")
    outside = [rel for rel in manifest["files"] if not _inside(rel)]
    if outside:
        raise DatasetError(f"{path} names files outside the dataset folder: {outside}; expected "
                           f"paths such as 'train/images.npy' relative to {folder} (no '..', no "
                           f"absolute paths)")
    # json.dumps(sort_keys=True) stored the splits alphabetically; give them back as train, val, test
    manifest["splits"] = dict(sorted(manifest["splits"].items(),
                                     key=lambda kv: ("train", "val", "test", kv[0]).index(kv[0])))
    return manifest


def check_dataset(folder: str | Path) -> str:
    """Validate a dataset folder: every file the format expects is listed in its manifest,
    present and matches its checksum, and every split loads with the right dtypes, shapes and
    value ranges (see :func:`load_dataset`).

    Returns a one-line summary when all is well; raises :class:`DatasetError` naming every
    missing, unlisted, unexpected or corrupted file (or the first bad array) otherwise.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    _check_files(folder, manifest)
    load_dataset(folder, verify=False)
    counts = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    return (f"{folder}: OK, all {len(manifest['files'])} data files match the checksums in "
            f"manifest.json (seed {manifest.get('seed')}, {counts})")


def _check_files(folder: Path, manifest: dict) -> None:
    """Raise a DatasetError unless the manifest lists exactly the files the format expects for
    its splits, and each is there with the checksum the manifest gives."""
    expected = expected_files(manifest["splits"])
    unlisted = [rel for rel in expected if rel not in manifest["files"]]
    unexpected = sorted(rel for rel in manifest["files"] if rel not in expected)
    missing, corrupted = [], []
    for rel, checksum in sorted(manifest["files"].items()):
        path = folder / rel
        if rel in unexpected:
            continue
        if not path.is_file():
            missing.append(rel)
        elif _sha256(path) != checksum:
            corrupted.append(rel)
    missing += [rel for rel in unlisted if not (folder / rel).is_file()]
    unlisted = [rel for rel in unlisted if rel not in missing]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unlisted:
        problems.append("not listed in manifest.json (no checksum to verify): " + ", ".join(unlisted))
    if unexpected:
        problems.append("listed in manifest.json but not part of the format (expected only " +
                        f"{', '.join(f'<split>/{a}.npy' for a in ARRAYS)}, <split>/texts.json): " +
                        ", ".join(unexpected))
    if corrupted:
        problems.append("corrupted (checksum differs from manifest.json): " + ", ".join(corrupted))
    if problems:
        raise DatasetError(f"dataset {folder} is damaged; " + "; ".join(problems) + ". " +
                           _regenerate_hint(manifest, folder))


def _regenerate_hint(manifest: dict, folder: Path) -> str:
    """How to rebuild the dataset described by ``manifest`` (a command when one exists)."""
    seed, size = manifest.get("seed"), manifest.get("size")
    if seed is not None and size in ("small", "medium", "large"):
        return f"Regenerate it with `mmcourse data --seed {seed} --size {size} --out {folder} --overwrite`"
    return (f"Regenerate it as it was made: make_course_dataset(seed={seed}, "
            f"size={manifest['splits']}) and save_dataset(..., overwrite=True)")


def load_dataset(folder: str | Path, verify: bool = True) -> dict[str, CourseSplit]:
    """Read a dataset written by :func:`save_dataset` as ``{split name: CourseSplit}``.

    ``verify`` first checks that every expected file is there with its checksum. Every split is
    then checked against the format (see the module docstring): dtypes, shapes, the sample count
    in the manifest, labels in ``[0, len(classes))`` and every attribute and quality index within
    its vocabulary; a :class:`DatasetError` names the file and what was expected otherwise.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if verify:
        _check_files(folder, manifest)
    classes = manifest["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DatasetError(f"{folder / 'manifest.json'}: 'classes' must be a non-empty list of "
                           f"names, got {classes!r}")
    splits = {}
    for name, count in manifest["splits"].items():
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
        _validate_split(folder / name, arrays, texts, count, len(classes))
        try:
            splits[name] = CourseSplit(texts=texts, classes=tuple(classes),
                                       sample_rate=manifest.get("sample_rate", SAMPLE_RATE),
                                       name=name, **arrays)
        except ValueError as err:
            raise DatasetError(f"dataset {folder}, split {name!r}: {err}") from err
    return splits


def _validate_split(folder: Path, arrays: dict[str, np.ndarray], texts, n: int,
                    num_classes: int) -> None:
    """Raise a DatasetError naming the file unless the arrays of one split have the format's
    dtypes and shapes, ``n`` samples, and every index within its vocabulary."""
    spec = {  # dtype, shape (None: any size), vocabulary size per column (None: not an index)
        "images": (np.uint8, (n, 3, 32, 32), None),
        "audio": (np.int16, (n, None), None),
        "audio_lengths": (np.int64, (n,), None),
        "labels": (np.int64, (n,), [num_classes]),
        "attributes": (np.int64, (n, len(ATTRIBUTES)),
                       [num_classes, len(COLOURS), len(SIZES), len(POSITIONS)]),
        "quality": (np.int8, (n, len(QUALITY_LEVELS)), [len(v) for v in QUALITY_LEVELS.values()]),
    }
    for array, (dtype, shape, vocab) in spec.items():
        value, path = arrays[array], folder / f"{array}.npy"
        if value.dtype != dtype or value.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(value.shape, shape)):
            want = "(" + ", ".join("L" if d is None else str(d) for d in shape) + \
                   ("," if len(shape) == 1 else "") + ")"
            raise DatasetError(f"{path}: expected {np.dtype(dtype).name} {want}, got "
                               f"{value.dtype.name} {tuple(value.shape)}")
        for j, size in enumerate(vocab or []):
            column = value if value.ndim == 1 else value[:, j]
            if len(column) and (column.min() < 0 or column.max() >= size):
                what = array if value.ndim == 1 else f"{array} column {j} ({_column(array, j)})"
                raise DatasetError(f"{path}: {what} must be indices in [0, {size}), got values "
                                   f"from {int(column.min())} to {int(column.max())}")
    lengths, width = arrays["audio_lengths"], arrays["audio"].shape[1]
    if len(lengths) and (lengths.min() < 0 or lengths.max() > width):
        raise DatasetError(f"{folder / 'audio_lengths.npy'}: clip lengths must be in [0, {width}] "
                           f"(the width of audio.npy), got {int(lengths.min())} to "
                           f"{int(lengths.max())}")
    if not isinstance(texts, list) or len(texts) != n or not all(isinstance(t, str) for t in texts):
        got = (f"a list of {len(texts)} items" if isinstance(texts, list) else type(texts).__name__)
        raise DatasetError(f"{folder / 'texts.json'}: expected a list of {n} strings, got {got}"
                           + ("" if not isinstance(texts, list) or len(texts) != n else
                              " that are not all strings"))


def _column(array: str, j: int) -> str:
    return ATTRIBUTES[j] if array == "attributes" else list(QUALITY_LEVELS)[j]
