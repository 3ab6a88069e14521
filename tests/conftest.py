"""Shared test set-up: the kernel environment, the ``repo_root`` fixture, the ``notebook`` marker,
and how the suite is split between processes when it runs on several cores (pytest-xdist).

The environment variables are set at import, before any test starts a kernel, so that kernels
started by papermill, nbclient or nbval inherit them (a value already set wins); with several
test processes, the controller sets them before it starts the others, which inherit them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mmcourse.tools.runner import KERNEL_ENV

for _key, _value in KERNEL_ENV.items():
    os.environ.setdefault(_key, _value)

# Frozen course features (mmcourse.features) are cached on disk; the tests use a cache of their
# own, empty at the start of every session, so that they measure and check a cold start too.
_OWN_CACHE = None
if "MMCOURSE_CACHE" not in os.environ:
    _OWN_CACHE = os.environ["MMCOURSE_CACHE"] = tempfile.mkdtemp(prefix="mmcourse-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    if (getattr(config.option, "numprocesses", None) or 0) and not hasattr(config, "workerinput"):
        # Several test processes share the cores (scripts/test.sh: pytest-xdist), each kernel
        # with as many torch threads as there are cores: threads that wait sleep instead of
        # spinning, or every process slows the others down (2-3x here). Results do not change.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.addinivalue_line(
        "markers", "notebook: executes the course notebooks (slow; deselect with -m 'not notebook')")
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab or the website in headless Chromium (deselect with "
        "-m 'not browser')")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder (holding solutions/, notebooks/, tests/)."""
    return REPO_ROOT


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the tests of a module (``pytestmark = usefixtures("one_thread")``):
    tiny tensors run fastest on one thread, and stay quick when the machine is busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The order the tests start in, and what runs together, when the suite runs in several processes
# (pytest-xdist, ``--dist loadgroup``; scripts/test.sh). The longest modules start first, so that
# no long one is left for the end while the other processes wait. Each module is marked as one
# group (``xdist_group``), meant to keep its tests in one process, but with the pinned pytest 9.2
# and pytest-xdist 3.8 the groups do not take effect: xdist puts the group into ``item._nodeid``,
# which pytest 9.2 no longer reads (measured 2026-12-08: one module's tests ran on both workers).
# So tests of one module can run at the same moment in two processes, and each module fixture is
# made once per process: a test must not assume that nothing else runs beside it (the grading
# tests look only for their own sandbox's processes).
FIRST = ("test_browser.py", "test_notebooks.py", "test_site.py", "test_grading.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        order = FIRST.index(name) if name in FIRST else len(FIRST)
        # among the notebook executions: the solutions' strict nbval (the full defaults) first
        return order, int(name == "test_notebooks.py" and "nbval" not in item.name)

    items.sort(key=rank)  # stable: each module keeps its own order
    for item in items:
        if item.path.name != "test_notebooks.py":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
