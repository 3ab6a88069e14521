"""mmcourse.distributed: sharding, gradient accumulation, a real two-process gloo run, errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import DistributedSampler

from mmcourse import distributed as D
from mmcourse import distributed_data as DD
from mmcourse import distributed_launch as DL

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------- sharding

def test_rank_batches_follow_the_distributed_sampler():
    n, world, batch, accum = 50, 3, 4, 2
    for epoch in (0, 1):
        shards = [D.rank_batches(n, world, r, batch, accum, epoch, seed=3) for r in range(world)]
        for r, steps in enumerate(shards):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=3)
            sampler.set_epoch(epoch)
            flat = torch.cat([i for step in steps for i in step]).tolist()
            assert flat == list(sampler)[:len(flat)]
            assert len(steps) == 17 // (batch * accum)   # ceil(50 / 3) = 17 per rank, 2 full steps
            assert all(len(step) == accum and all(len(i) == batch for i in step) for step in steps)
        # every step of every rank sees different samples (padding aside, none twice in a step)
        step0 = torch.cat([i for s in shards for i in s[0]])
        assert len(set(step0.tolist())) == len(step0)
    epochs = [torch.cat([i for s in D.rank_batches(n, world, 0, batch, accum, e, 3) for i in s])
              for e in (0, 1)]
    assert not torch.equal(*epochs)   # set_epoch: a new shuffle every epoch


def test_check_sizes():
    assert D.check_sizes(1000, 2, batch_size=32, accum_steps=2) == 32
    assert D.check_sizes(1000, 2, accum_steps=2, global_batch_size=256) == 64
    with pytest.raises(ValueError, match="not divisible by world size 3"):
        D.check_sizes(1000, 3, global_batch_size=256)
    with pytest.raises(ValueError, match="exactly one"):
        D.check_sizes(1000, 2, batch_size=32, global_batch_size=64)
    with pytest.raises(ValueError, match="fewer than one optimizer step"):
        D.check_sizes(100, 4, batch_size=16, accum_steps=2)
    with pytest.raises(ValueError, match="world size"):
        D.check_sizes(100, 0, batch_size=16)
    with pytest.raises(ValueError, match="rank must be"):
        D.rank_batches(10, 2, 2, 2)


def test_data_layout_and_errors(tmp_path):
    data = DD.synthetic_data(n=64, dims={"image": 5, "text": 3}, seed=1)
    assert data["features"]["image"].shape == (64, 5) and data["labels"].dtype == torch.int64
    batch = D.take(data, torch.tensor([3, 1]))
    assert batch["image"].shape == (2, 5) and batch["present"]["text"].tolist() == [True, True]
    with pytest.raises(ValueError, match="'features', 'present' and 'labels'"):
        DD.check_data({"features": {}})
    with pytest.raises(ValueError, match="data\\['features'\\]\\['image'\\]"):
        DD.check_data({**data, "features": {"image": torch.zeros(3, 5)}})
    with pytest.raises(FileNotFoundError, match="synthetic"):
        DD.load_data(tmp_path / "missing.pt")


def test_save_features_round_trip(tmp_path):
    class Split:   # the attributes of a FeatureSplit that save_features reads
        pooled = {"image": torch.randn(10, 4)}
        present = {"image": torch.ones(10, dtype=torch.bool)}
        labels = torch.arange(10) % 3
    path = D.save_features(Split(), tmp_path / "f.pt")
    data = DD.load_data(path)
    assert torch.equal(data["features"]["image"], Split.pooled["image"])


# -------------------------------------------------------------------- gradient accumulation

def test_accumulation_equals_one_big_batch():
    data = DD.synthetic_data(n=96, seed=2)
    grads = []
    for k in (1, 3):
        model = D.make_model({m: 16 for m in ("image", "audio", "text")}, seed=0)
        index = torch.arange(96)
        micro = [D.take(data, i) for i in index.chunk(k)]
        loss = D.accumulate(model, micro)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        if k == 1:
            big_loss = loss
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert torch.isclose(loss, big_loss, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        D.accumulate(model, [])


def test_single_process_reference_is_deterministic():
    data = DD.synthetic_data(n=256, seed=0)
    a, losses_a = D.train_single_process(data, 2, 16, 2, epochs=2)
    b, losses_b = D.train_single_process(data, 2, 16, 2, epochs=2)
    assert losses_a == losses_b and D.checksum(a) == D.checksum(b)
    assert len(losses_a) == 2 * (128 // 32) and losses_a[-1] < losses_a[0]


# ----------------------------------------------------------------------- backend and errors

def test_pick_backend(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.pick_backend() == "gloo" and D.pick_backend("gloo") == "gloo"
    with pytest.raises(RuntimeError, match="needs CUDA"):
        D.pick_backend("nccl")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert D.pick_backend("auto") == "nccl"
    with pytest.raises(ValueError, match="one of"):
        D.pick_backend("mpi")


def test_cli_errors(monkeypatch, capsys):
    for key in D.TORCHRUN_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit, match="started by torchrun"):
        D.main(["--out", "unused"])
    with pytest.raises(SystemExit):
        D.parse_args(["--epochs", "0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        D.parse_args(["--batch-size", "8", "--global-batch-size", "16"])
    with pytest.raises(SystemExit):
        D.parse_args(["--backend", "mpi"])
    with pytest.raises(ValueError, match="nproc_per_node"):
        DL.torchrun_command(0)


def test_help_without_torchrun():
    out = subprocess.run([sys.executable, "-m", "mmcourse.distributed", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--accum-steps" in out.stdout


# ------------------------------------------------------------------ real runs with torchrun

def test_two_process_gloo_run_matches_one_process(tmp_path):
    """A real run: 2 processes, gloo, gradient accumulation; rank weights identical, and the
    same as one process on the same global batches (to float rounding)."""
    settings = dict(epochs=2, batch_size=32, accum_steps=2, lr=3e-3, seed=1)
    res = D.launch(2, out=tmp_path, backend="gloo", timeout=240, **settings)
    assert res["backend"] == "gloo" and res["world_size"] == 2 and res["global_batch"] == 128
    assert res["rank_checksums"][0] == res["rank_checksums"][1]
    assert res["max_rank_difference"] == 0.0
    assert res["log"][0].startswith("epoch 1/2: mean training loss")
    assert res["steps"] == 2 * (1024 // 64) and res["losses"][-1] < res["losses"][0]
    data = DD.synthetic_data(seed=1)
    single, losses = D.train_single_process(data, 2, 32, 2, epochs=2, lr=3e-3, seed=1)
    ddp = D.make_model({m: 16 for m in ("image", "audio", "text")}, seed=1)
    ddp.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    assert D.checksum(ddp) == res["rank_checksums"][0]
    assert (D.weights_vector(ddp) - D.weights_vector(single)).abs().max() < 1e-4
    assert max(abs(a - b) for a, b in zip(losses, res["losses"])) < 1e-4


def test_bad_global_batch_fails_before_training(monkeypatch, tmp_path):
    # as rank 0 of 2 under torchrun: the sizes are checked before the process group starts
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit, match="not divisible by world size 2 x accumulation steps 1"):
        D.main(["--out", str(tmp_path), "--global-batch-size", "99", "--backend", "gloo"])
    with pytest.raises(SystemExit, match="no such file"):
        D.main(["--out", str(tmp_path), "--data", str(tmp_path / "nope.pt"), "--backend", "gloo"])


def _allreduce_demo():
    dist.init_process_group("gloo")  # noqa: F821 (the script's header imports dist)
    rank = dist.get_rank()  # noqa: F821
    grad = torch.tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(grad)  # noqa: F821
    dist.barrier()  # noqa: F821
    dist.destroy_process_group()  # noqa: F821
    return {"rank": rank, "sum": grad}


def test_torchrun_function_all_reduce():
    results = D.torchrun_function(_allreduce_demo, nproc_per_node=2, timeout=240)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(torch.equal(r["sum"], torch.tensor([3.0, 6.0])) for r in results)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL path)")
def test_two_gpu_nccl_run(tmp_path):
    res = D.launch(2, out=tmp_path, epochs=1, timeout=240)
    assert res["backend"] == "nccl" and res["device"] == "cuda"
    assert res["rank_checksums"][0] == res["rank_checksums"][1]
