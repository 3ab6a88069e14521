"""Tests for the small helpers every notebook uses: seeding, device choice, progress bars and the
environment report (mmcourse/reproducibility.py, device.py, progress.py, envinfo.py)."""
from __future__ import annotations

import io
import json
import os
import random

import numpy as np
import pytest
import torch
from tqdm import tqdm as std_tqdm

import mmcourse
from mmcourse import device as device_mod
from mmcourse import envinfo
from mmcourse.device import ENV_VAR, available_devices, get_device
from mmcourse.progress import progress, progress_enabled
from mmcourse.reproducibility import seed_everything, seed_worker


@pytest.fixture(autouse=True)
def restore_global_state():
    """seed_everything changes process-wide settings: put them back after every test."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(torch_state)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


def _draws() -> tuple:
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(),
            torch.randint(0, 1000, (4,)).tolist())


# -- seed_everything ----------------------------------------------------------------------------

def test_package_exports():
    assert mmcourse.seed_everything is seed_everything
    assert mmcourse.get_device is get_device
    assert mmcourse.progress is progress
    assert isinstance(mmcourse.__version__, str)


def test_same_seed_same_draws():
    seed_everything(42)
    first = _draws()
    seed_everything(42)
    assert _draws() == first


def test_different_seed_different_draws():
    seed_everything(1)
    a = _draws()
    seed_everything(2)
    b = _draws()
    for x, y in zip(a, b):
        assert x != y


def test_returns_a_seeded_generator():
    g = seed_everything(7)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == 7
    a = torch.rand(4, generator=g)
    b = torch.rand(4, generator=seed_everything(7))
    assert torch.equal(a, b)
    # the generator is separate from the global one: drawing from it leaves the global stream alone
    seed_everything(7)
    expected = torch.rand(3)
    g = seed_everything(7)
    torch.rand(5, generator=g)
    assert torch.equal(torch.rand(3), expected)


def test_generator_repeats_dataloader_shuffling():
    data = list(range(20))

    def order(seed):
        g = seed_everything(seed)
        loader = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True, generator=g)
        return [b.tolist() for b in loader]

    assert order(3) == order(3)
    assert order(3) != order(4)


@pytest.mark.parametrize("seed", [np.int64(5), 2**40, 0])
def test_accepted_seeds(seed):
    g = seed_everything(seed)
    assert g.initial_seed() == int(seed)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None, [1]])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got"):
        seed_everything(seed)


def test_deterministic_flag(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic

    seed_everything(0)  # deterministic is the default
    assert torch.are_deterministic_algorithms_enabled()


def test_deterministic_keeps_a_user_cublas_setting(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_seed_worker():
    torch.manual_seed(123)
    seed_worker(0)
    got = (np.random.rand(3).tolist(), random.random())
    np.random.seed(123)
    random.seed(123)
    assert got == (np.random.rand(3).tolist(), random.random())


def test_seed_worker_large_torch_seed():
    torch.manual_seed(2**40 + 9)  # numpy only takes seeds below 2**32
    seed_worker(1)
    got = np.random.rand(2).tolist()
    np.random.seed((2**40 + 9) % 2**32)
    assert got == np.random.rand(2).tolist()


# -- get_device ---------------------------------------------------------------------------------

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
no_mps = pytest.mark.skipif(device_mod._mps_available(), reason="needs a machine without MPS")


@pytest.fixture()
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@no_cuda
@no_mps
@pytest.mark.parametrize("arg", [None, "auto", " AUTO "])
def test_auto_is_cpu_here(no_env, arg):
    assert get_device(arg) == torch.device("cpu")


@pytest.mark.parametrize("arg", ["cpu", "CPU", torch.device("cpu")])
def test_cpu(no_env, arg):
    d = get_device(arg)
    assert isinstance(d, torch.device) and d.type == "cpu"


def test_env_var_respected(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv(ENV_VAR, "")  # empty means unset
    assert isinstance(get_device(), torch.device)


@no_cuda
def test_argument_beats_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cuda")
    assert get_device("cpu") == torch.device("cpu")


@no_cuda
def test_env_var_unavailable_device(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match=f"environment variable {ENV_VAR}.*available: .*cpu"):
        get_device()


@no_cuda
@pytest.mark.parametrize("arg", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_unavailable(no_env, arg):
    with pytest.raises(RuntimeError, match=r"CUDA is not available here; available: .*cpu"):
        get_device(arg)


@no_mps
def test_mps_unavailable(no_env):
    with pytest.raises(RuntimeError, match=r"MPS is not available here; available: .*cpu"):
        get_device("mps")


@pytest.mark.parametrize("arg", ["gpu", "cuda:x", "", "cpu cpu"])
def test_garbage_device(no_env, arg):
    with pytest.raises(ValueError, match=f"unknown device {arg!r}"):
        get_device(arg)


def test_garbage_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=f"unknown device 'gpu' \\(from the environment variable {ENV_VAR}\\)"):
        get_device()


def test_unsupported_device_type(no_env):
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        get_device("meta")


@pytest.mark.parametrize("arg", [0, 1.0, ["cpu"]])
def test_wrong_type(no_env, arg):
    with pytest.raises(TypeError, match="device must be a string or torch.device"):
        get_device(arg)


def test_with_a_fake_gpu(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device() == torch.device("cuda")
    assert get_device("cuda:0") == torch.device("cuda:0")
    assert available_devices()[0] == "cuda:0" and available_devices()[-1] == "cpu"
    with pytest.raises(RuntimeError, match=r"only 1 CUDA device\(s\) exist"):
        get_device("cuda:3")


def test_with_fake_mps(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert get_device() == torch.device("mps")
    assert get_device("mps") == torch.device("mps")
    assert available_devices() == ["mps", "cpu"]


def test_available_devices():
    names = available_devices()
    assert names[-1] == "cpu" and names.count("cpu") == 1
    if not torch.cuda.is_available() and not device_mod._mps_available():
        assert names == ["cpu"]


# -- progress -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "false", "no", "off"])
def test_progress_disabled(monkeypatch, value):
    monkeypatch.setenv("MMCOURSE_PROGRESS", value)
    assert not progress_enabled()
    items = [1, 2, 3]
    assert progress(items, desc="x") is items
    gen = (i for i in range(3))
    assert progress(gen) is gen


@pytest.mark.parametrize("value", [None, "1", "yes"])
def test_progress_enabled(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("MMCOURSE_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("MMCOURSE_PROGRESS", value)
    assert progress_enabled()
    sink = io.StringIO()
    bar = progress(range(4), desc="epochs", file=sink)
    try:
        assert isinstance(bar, std_tqdm)
        assert bar.desc.startswith("epochs") and bar.total == 4 and not bar.leave
        assert list(bar) == [0, 1, 2, 3]
    finally:
        bar.close()
    assert "epochs" in sink.getvalue()


def test_progress_total_and_leave(monkeypatch):
    monkeypatch.setenv("MMCOURSE_PROGRESS", "1")
    bar = progress(iter([1, 2]), total=2, leave=True, file=io.StringIO())
    try:
        assert bar.total == 2 and bar.leave
        assert list(bar) == [1, 2]
    finally:
        bar.close()


# -- envinfo ------------------------------------------------------------------------------------

REPORT_KEYS = {"python", "platform", "cpu_count", "torch_threads", "packages", "device", "cuda",
               "mps", "bf16_cpu", "bf16_cpu_fast", "cpu_capability", "executable"}


@pytest.fixture(scope="module")
def report():
    env = os.environ.pop(ENV_VAR, None)
    try:
        return envinfo.environment_report()
    finally:
        if env is not None:
            os.environ[ENV_VAR] = env


def test_report_keys_and_types(report):
    assert set(report) == REPORT_KEYS
    assert report["python"].count(".") == 2
    assert isinstance(report["cpu_count"], int) and report["cpu_count"] >= 1
    assert isinstance(report["torch_threads"], int) and report["torch_threads"] >= 1
    assert list(report["packages"]) == list(envinfo.PACKAGES)
    assert report["packages"]["torch"] == torch.__version__.split("+")[0]
    assert report["packages"]["numpy"] == np.__version__
    assert isinstance(report["mps"], bool) and isinstance(report["bf16_cpu"], bool)
    if not torch.cuda.is_available():
        assert report["cuda"] is None
        assert report["device"] in ("cpu", "mps")
    else:
        assert report["cuda"]["devices"] and report["device"] == "cuda"


def test_report_is_json_serialisable(report):
    assert json.loads(json.dumps(report)) == report


def test_report_unknown_package(monkeypatch):
    monkeypatch.setattr(envinfo, "PACKAGES", ("numpy", "surely-not-installed-mmcourse-xyz"))
    packages = envinfo.environment_report()["packages"]
    assert packages == {"numpy": np.__version__, "surely-not-installed-mmcourse-xyz": "not installed"}


def test_format_report(report):
    text = envinfo.format_report(report)
    lines = text.splitlines()
    assert len(lines) == 2 + len(report["packages"]) + 5
    assert lines[0].startswith("python") and report["python"] in lines[0]
    assert f"torch uses {report['torch_threads']} threads" in lines[1]
    for name, version in report["packages"].items():
        assert any(line.split() == [name, version] for line in lines), name
    assert lines[-1].split()[:2] == ["device", report["device"]]
    assert "get_device()" in lines[-1]


def test_format_report_with_gpu():
    fake = {"python": "3.11.7", "platform": "Linux x86_64", "cpu_count": 16, "torch_threads": 16,
            "packages": {"torch": "2.14.1"}, "device": "cuda",
            "cuda": {"version": "12.8", "devices": ["NVIDIA H100", "NVIDIA H100"]},
            "mps": False, "bf16_cpu": False, "executable": "/x/python"}
    lines = envinfo.format_report(fake).splitlines()
    assert lines[3].split(None, 1) == ["cuda", "12.8: NVIDIA H100, NVIDIA H100"]
    assert lines[4].split(None, 1) == ["mps", "not available"]
    assert lines[5].startswith("bf16 on cpu") and lines[5].endswith(" no")
    assert lines[-1].startswith("device") and " cuda " in lines[-1]
