"""A notebook's key numbers: ``report_metrics(accuracy=0.91, train_s=12.0)``.

The call displays the numbers as a small table and, alongside it in the same output, as JSON under
the mimetype ``application/vnd.mmcourse.metrics+json``. ``mmcourse run`` reads the last such output
of each executed notebook and shows it in its summary, so the course's results can be compared from
run to run without parsing printed text.
"""
from __future__ import annotations

import math
import sys
from typing import Any

from mmcourse.notebook_format import METRICS_MIMETYPE

DECIMALS = 4


def report_metrics(metrics: dict[str, Any] | None = None, **kw: Any) -> dict[str, int | float | str | bool]:
    """Validate, round and display a notebook's key numbers; return them as a plain dict.

    Input: a dict and/or keyword arguments (keywords win over dict entries of the same name). Keys
    must be strings; values ints, floats, strings or bools, or scalars with ``.item()`` (numpy
    scalars, one-element tensors), which are converted. Floats are rounded to 4 decimals.
    Output: the validated dict, in the order given. In IPython/Jupyter it is also displayed (a
    text table plus the JSON bundle); elsewhere nothing is printed.
    Raises TypeError for a key or value of the wrong type, ValueError for NaN or infinity.
    """
    if metrics is not None and not isinstance(metrics, dict):
        raise TypeError(f"report_metrics: expected a dict of metrics (or keyword arguments), "
                        f"got {type(metrics).__name__}")
    merged = {**(metrics or {}), **kw}
    clean: dict[str, int | float | str | bool] = {}
    for key, value in merged.items():
        if not isinstance(key, str):
            raise TypeError(f"report_metrics: metric names must be str, got {key!r} "
                            f"({type(key).__name__})")
        clean[key] = _clean_value(key, value)
    _display(clean)
    return clean


def format_metrics(metrics: dict[str, Any]) -> str:
    """The plain-text table shown for ``metrics``: one ``name  value`` line each, aligned."""
    if not metrics:
        return "(no metrics)"
    width = max(len(key) for key in metrics)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in metrics.items())


def _clean_value(key: str, value: Any) -> int | float | str | bool:
    if not isinstance(value, (bool, int, float, str)) and callable(getattr(value, "item", None)):
        try:  # numpy scalars, 0-d arrays, one-element tensors
            value = value.item()
        except (ValueError, RuntimeError) as err:
            raise TypeError(f"report_metrics: metric {key!r} must be a single number or a string, "
                            f"got a {type(value).__name__} with more than one element") from err
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"report_metrics: metric {key!r} is {value}; only finite numbers can "
                             f"be reported")
        return round(float(value), DECIMALS)
    raise TypeError(f"report_metrics: metric {key!r} must be an int, float, str or bool, "
                    f"got {type(value).__name__}: {value!r}")


def _display(metrics: dict[str, Any]) -> None:
    """Display the bundle when running inside IPython (a notebook kernel); otherwise do nothing."""
    if "IPython" not in sys.modules:  # never imported, so certainly not inside IPython
        return
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is None:
        return
    display({METRICS_MIMETYPE: metrics, "text/plain": format_metrics(metrics)}, raw=True)
