"""The course's on-disk cache: work that takes seconds or minutes and gives the same result every
time (the generated course dataset, the frozen course features) is kept and reused.

Where: a folder given as ``cache``, else ``$MMCOURSE_CACHE``, else ``~/.cache/mmcourse``; one
subfolder per kind (``datasets/``, ``features/``). Deleting the folder is always safe: entries
are rebuilt when needed.

An entry's file name carries a key, the SHA-256 of the arguments that produced it, of library
versions and of the source code of the module that produced it and of every ``mmcourse`` module
it imports (directly or through others), so an entry is never used after the code behind it
changed. Entries are written atomically: a reader sees the old file or the new one, never half a
file. A cache that cannot be read or written (another user's folder, a read-only or full disk)
only costs time: the work is done again, and a write that fails says so in a warning.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

PACKAGE = Path(__file__).resolve().parent


def cache_root(cache: bool | str | os.PathLike = True) -> Path:
    """The cache folder: ``cache`` when it is a path, else ``$MMCOURSE_CACHE`` or
    ``~/.cache/mmcourse`` (the folder need not exist yet)."""
    if not isinstance(cache, bool):
        return Path(cache)
    return Path(os.environ.get("MMCOURSE_CACHE") or Path.home() / ".cache" / "mmcourse")


def source_files(entry: str | os.PathLike) -> list[Path]:
    """The module ``entry`` (a path inside the package) and every mmcourse module it imports,
    directly or through other modules: the code that shapes what it produces. Read from the
    import statements, so that a module split off later is covered without a list to keep up to
    date."""
    todo, seen = [Path(entry).resolve()], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "mmcourse" or len(parts) == 1:
                    continue
                module = PACKAGE.joinpath(*parts[1:])
                for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                    if candidate.is_file():
                        todo.append(candidate)
                        break
    return sorted(seen)


def entry_path(kind: str, cache: bool | str | os.PathLike, args: dict[str, Any],
               entry: str | os.PathLike, prefix: str, suffix: str,
               versions: tuple[str, ...] = ()) -> Path:
    """Where the entry made by the code of ``entry`` from ``args`` (JSON-serialisable; the order
    of its keys does not matter) lives: ``<root>/<kind>/<prefix>-<16 hex of the key><suffix>``.
    ``versions``: library versions the result depends on (e.g. ``torch.__version__``)."""
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode())
    for version in versions:
        digest.update(version.encode())
    for source in source_files(entry):
        digest.update(source.read_bytes())
    return cache_root(cache) / kind / f"{prefix}-{digest.hexdigest()[:16]}{suffix}"


def write_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """Write an entry: ``save(tmp)`` writes a temporary file next to ``path``, which then
    replaces ``path`` in one step (a concurrent reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_entry(path: Path, read: Callable[[Path], Any],
               valid: Callable[[Any], bool] = lambda value: True) -> Any | None:
    """The entry at ``path``, read with ``read(path)``; None when there is none or it may not be
    read (no permission). A file that is there but is not a valid entry (``read`` fails, or
    ``valid(value)`` is false: truncated, foreign) is deleted, so that it is rebuilt."""
    try:
        if not path.exists():
            return None
        value = read(path)
    except PermissionError:
        return None
    except Exception:  # noqa: BLE001 - any unreadable file is simply rebuilt
        pass
    else:
        if valid(value):
            return value
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def write_entry(path: Path, save: Callable[[Path], None]) -> bool:
    """Write an entry with :func:`write_atomic`; True if it was written. When the cache cannot be
    written (``OSError``: no permission, a read-only or full disk) a warning says so and False is
    returned: the caller has its result anyway."""
    try:
        write_atomic(path, save)
    except OSError as err:
        warnings.warn(f"mmcourse: could not write the cache entry {path} ({err}); the result is "
                      "used without being cached", RuntimeWarning, stacklevel=3)
        return False
    return True
