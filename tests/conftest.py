"""Shared test set-up: the kernel environment, the ``repo_root`` fixture, the ``notebook`` marker.

The environment variables are set at import, before any test starts a kernel, so that kernels
started by papermill, nbclient or nbval inherit them (a value already set wins).
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
