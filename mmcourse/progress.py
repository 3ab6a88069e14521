"""Progress bars that behave in notebooks, terminals and CI: ``progress(iterable, ...)``."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when ``MMCOURSE_PROGRESS=0`` (set by the course runner and the tests so that executed
    notebooks do not store bar widgets, which differ from run to run)."""
    return os.environ.get("MMCOURSE_PROGRESS", "1") not in ("0", "false", "no", "off")


def progress(iterable: Iterable[T], desc: str | None = None, total: int | None = None,
             leave: bool = False, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal).

    Turned off entirely (the iterable is returned as is) when progress bars are disabled, see
    :func:`progress_enabled`.
    """
    if not progress_enabled():
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=leave, **kwargs)
