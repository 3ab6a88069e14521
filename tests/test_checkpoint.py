"""mmcourse.checkpoint: save a run, resume it, and get exactly the run that never stopped."""
from __future__ import annotations

import random
import re
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmcourse.checkpoint import (CheckpointError, fit_resumable, load_checkpoint, rng_state,
                                 save_checkpoint, set_rng_state)
from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.tensors import TensorBatches
from mmcourse.fusion import ConcatFusion
from mmcourse.reproducibility import seed_everything
from mmcourse.training import History, fit

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"image": 6, "text": 4}


def loader(seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = 96
    labels = torch.randint(0, 3, (n,), generator=gen)
    data = {m: torch.randn(n, d, generator=gen) + labels[:, None].float() for m, d in DIMS.items()}
    present = {"image": torch.rand(n, generator=gen) > 0.2, "text": torch.rand(n, generator=gen) > 0.2}
    present["text"] |= ~present["image"]
    return TensorBatches(data, labels, present=present, batch_size=16, shuffle=True, seed=seed)


def model(seed=0, dropout=0.3, out_dim=8):
    """Frozen-feature fusion with modality dropout and dropout: training draws random numbers."""
    seed_everything(seed)
    return MultimodalClassifier({m: None for m in DIMS}, ConcatFusion(DIMS, out_dim), 3,
                                modality_dropout=dropout, dropout=0.2)


def optimizer_of(m):
    return torch.optim.AdamW(m.parameters(), lr=1e-2)


def weights(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# ------------------------------------------------------------------------ exact resume

def test_two_plus_two_epochs_equal_four_straight(tmp_path):
    # four epochs straight, with the plain training loop
    straight = model()
    straight_loader = loader()
    history = fit(straight, straight_loader, epochs=4, optimizer=optimizer_of(straight))
    # two epochs, saved
    first = model()
    first_loader = loader()
    opt = optimizer_of(first)
    part = fit_resumable(first, first_loader, epochs=4, path=tmp_path / "ckpt.pt", optimizer=opt,
                         stop_after=2)
    assert len(part.train_loss) == 2
    # everything random is disturbed before resuming: a new process would start elsewhere too
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    resumed = model(seed=7)
    resumed_loader = loader()
    next(iter(resumed_loader))                         # the loader's generator moves on
    full = fit_resumable(resumed, resumed_loader, epochs=4, path=tmp_path / "ckpt.pt",
                         optimizer=optimizer_of(resumed))
    assert full.train_loss == history.train_loss      # exactly, not approximately
    for key, value in weights(straight).items():
        assert torch.equal(weights(resumed)[key], value), key
    # a finished run resumes to nothing more
    again = fit_resumable(resumed, resumed_loader, epochs=4, path=tmp_path / "ckpt.pt",
                          optimizer=optimizer_of(resumed))
    assert again.train_loss == history.train_loss


def test_without_restoring_the_random_state_the_run_differs(tmp_path):
    straight = model()
    history = fit(straight, loader(), epochs=3, optimizer=optimizer_of(straight))
    first = model()
    first_loader = loader()
    opt = optimizer_of(first)
    fit(first, first_loader, epochs=1, optimizer=opt)
    save_checkpoint(tmp_path / "c.pt", first, opt, epoch=0)
    torch.manual_seed(123)
    resumed, resumed_loader = model(seed=7), loader()
    opt2 = optimizer_of(resumed)
    load_checkpoint(tmp_path / "c.pt", resumed, opt2, restore_rng=False)
    rest = fit(resumed, resumed_loader, epochs=2, optimizer=opt2)
    assert rest.train_loss != history.train_loss[1:]


def test_scheduler_and_val_history(tmp_path):
    def run(stop_after):
        m = model()
        opt = optimizer_of(m)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return m, opt, sched

    m, opt, sched = run(None)
    straight = fit_resumable(m, loader(), loader(1), epochs=3, path=tmp_path / "a.pt",
                             optimizer=opt, scheduler=sched)
    m2, opt2, sched2 = run(1)
    fit_resumable(m2, loader(), loader(1), epochs=3, path=tmp_path / "b.pt", optimizer=opt2,
                  scheduler=sched2, stop_after=1)
    m3, opt3, sched3 = run(None)
    resumed = fit_resumable(m3, loader(), loader(1), epochs=3, path=tmp_path / "b.pt",
                            optimizer=opt3, scheduler=sched3)
    assert resumed.train_loss == straight.train_loss
    assert resumed.val_accuracy == straight.val_accuracy and len(resumed.val_accuracy) == 3
    assert sched3.get_last_lr() == sched.get_last_lr() == [1e-2 * 0.5 ** 3]


# ------------------------------------------------------------------------ what is saved

def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(5)
    state = rng_state({"g": gen})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    set_rng_state(state, {"g": gen})
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])
    with pytest.raises(CheckpointError, match="generator 'other'"):
        set_rng_state(state, {"other": gen})


def test_checkpoint_contents(tmp_path):
    m = model()
    opt = optimizer_of(m)
    history = History(train_loss=[1.5, 1.2], val_accuracy=[0.5, 0.6], best_epoch=1)
    path = save_checkpoint(tmp_path / "sub" / "c.pt", m, opt, epoch=1, step=12, history=history,
                           extra={"note": "hello", "lr": 0.01})
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    m2 = model(seed=3)
    state = load_checkpoint(path, m2, optimizer_of(m2))
    assert state["epoch"] == 1 and state["step"] == 12 and state["model_class"] == "MultimodalClassifier"
    assert state["history"] == history and isinstance(state["history"], History)
    assert state["extra"] == {"note": "hello", "lr": 0.01}
    for key, value in weights(m).items():
        assert torch.equal(weights(m2)[key], value)
    with pytest.raises(ValueError, match="epoch"):
        save_checkpoint(tmp_path / "d.pt", m, epoch=-1)


# ------------------------------------------------------------------------ clear errors

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt", model())
    with pytest.raises(FileNotFoundError, match="does not exist either"):
        load_checkpoint(tmp_path / "no" / "nope.pt", model())


def test_corrupted_file(tmp_path):
    m = model()
    path = save_checkpoint(tmp_path / "c.pt", m, optimizer_of(m), epoch=0)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt", model())
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt", model())
    torch.save(m.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not an mmcourse checkpoint"):
        load_checkpoint(tmp_path / "bare.pt", model())


def test_checkpoint_of_another_model(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model(), epoch=0)
    with pytest.raises(CheckpointError, match="different model") as err:
        load_checkpoint(path, model(out_dim=5))
    assert "fusion.proj.weight (8, 10) in the file, (5, 10) in the model" in str(err.value)
    seed_everything(0)
    normed = MultimodalClassifier({m: None for m in DIMS}, ConcatFusion(DIMS, 8, normalize=True), 3)
    with pytest.raises(CheckpointError, match="not in the file: \\['fusion.norms.image.weight'"):
        load_checkpoint(path, normed)
    with pytest.raises(CheckpointError, match="not in the model: \\['fusion.norms.image.weight'"):
        load_checkpoint(save_checkpoint(tmp_path / "n.pt", normed, epoch=0), model())
    with pytest.raises(CheckpointError, match="no optimizer state"):
        m = model()
        load_checkpoint(path, m, optimizer_of(m))
    wrong = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="not in the file"):
        load_checkpoint(path, wrong)


def test_resume_of_a_different_optimizer(tmp_path):
    m = model()
    path = save_checkpoint(tmp_path / "c.pt", m, optimizer_of(m), epoch=0)
    m2 = model()
    opt = torch.optim.AdamW([{"params": [p]} for p in m2.parameters()], lr=1e-2)
    with pytest.raises(CheckpointError, match="does not fit the optimizer"):
        load_checkpoint(path, m2, opt)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_checkpoint_resumes_on_cpu(tmp_path):
    m = model().cuda()
    path = save_checkpoint(tmp_path / "c.pt", m, optimizer_of(m), epoch=0)
    cpu = model(seed=1)
    load_checkpoint(path, cpu, optimizer_of(cpu))
    assert all(t.device.type == "cpu" for t in cpu.state_dict().values())


# ------------------------------------------------------------------------ everything saved loads

def test_numpy_scalars_paths_and_histories_round_trip(tmp_path):
    m = model()
    history = History(train_loss=[np.float32(0.5), np.float64(0.25)], val_accuracy=[0.75],
                      best_epoch=np.int64(0))
    extra = {"out": Path("runs") / "a", "best": np.float64(0.875), "n": np.int64(3),
             "flag": np.bool_(True), "name": np.str_("concat"), "pair": (1, Path("b")),
             "nested": {"paths": [Path("c")], "tags": {"x", "y"}}, "t": torch.arange(3)}
    save_checkpoint(tmp_path / "c.pt", m, epoch=np.int64(2), step=np.int64(7), history=history,
                    extra=extra)
    state = load_checkpoint(tmp_path / "c.pt", model())
    assert state["epoch"] == 2 and type(state["epoch"]) is int and state["step"] == 7
    assert state["history"] == History(train_loss=[0.5, 0.25], val_accuracy=[0.75], best_epoch=0)
    got = state["extra"]
    assert got["out"] == Path("runs/a") and isinstance(got["out"], Path)
    assert (got["best"], got["n"], got["flag"], got["name"]) == (0.875, 3, True, "concat")
    assert got["pair"] == (1, Path("b")) and got["nested"] == {"paths": [Path("c")],
                                                              "tags": {"x", "y"}}
    assert torch.equal(got["t"], torch.arange(3))


@pytest.mark.parametrize("field, kwargs, message", [
    ("extra['a']", {"extra": {"a": np.zeros(3)}}, r"numpy\.ndarray .*torch\.from_numpy"),
    ("history[0]", {"history": [object()]}, r"builtins\.object cannot be read back"),
    ("extra['k']", {"extra": {"k": {(1, 2): 3}}}, r"key \(1, 2\) is a tuple"),
    ("extra['s']", {"extra": {"s": {Path("p")}}},
     r"a set holding a \w*Path"),
    ("history", {"history": namedtuple("H", "loss")(1.0)},
     r"H cannot be read back"),
])
def test_what_cannot_be_read_back_is_refused_at_save_time(tmp_path, field, kwargs, message):
    with pytest.raises(TypeError, match=rf"cannot save {re.escape(field)}: .*{message}"):
        save_checkpoint(tmp_path / "c.pt", model(), epoch=0, **kwargs)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("content, message", [
    (b"hello", r"not a readable checkpoint .*KeyError"),
    (b"", r"not a readable checkpoint"),
    (None, r"is a folder; expected a checkpoint file"),
])
def test_every_unreadable_file_is_a_checkpoint_error_naming_it(tmp_path, content, message):
    path = tmp_path / "c.pt"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*{message}"):
        load_checkpoint(path, model())


@pytest.mark.parametrize("payload, message", [
    ({"format": "mmcourse-checkpoint-1"}, r"incomplete checkpoint: it lacks \['model'"),
    ([1, 2], r"not an mmcourse checkpoint \(format 'list'"),
])
def test_a_torch_file_that_is_not_a_checkpoint_is_a_checkpoint_error(tmp_path, payload, message):
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "c.pt", model())


def test_a_checkpoint_with_an_entry_of_the_wrong_type_is_a_checkpoint_error(tmp_path):
    m = model()
    save_checkpoint(tmp_path / "c.pt", m, epoch=0)
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["epoch"], payload["rng"] = "one", None
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt is a corrupted checkpoint: epoch is a str, "
                                              r"rng is a NoneType"):
        load_checkpoint(tmp_path / "bad.pt", model())
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    del payload["rng"]["numpy"]
    torch.save(payload, tmp_path / "norng.pt")
    with pytest.raises(CheckpointError, match=r"norng\.pt: the random state .* incomplete"):
        load_checkpoint(tmp_path / "norng.pt", model())
