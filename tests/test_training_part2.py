"""mmcourse.training, Part 2 additions: fit(patience=, amp=) and evaluate()."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.tensors import TensorBatches
from mmcourse.fusion import make_fusion
from mmcourse.training import History, accuracy, evaluate, fit


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_loaders(n: int = 96, seed: int = 0, device: str = "cpu"):
    """Two modalities of features; the class (of 3) shows in the first features of "a"."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    a = torch.randn(n, 4, generator=gen) * 0.5
    a[torch.arange(n), labels] += 2.0
    b = torch.randn(n, 3, generator=gen)
    present = {"b": torch.rand(n, generator=gen) > 0.2}
    train = TensorBatches({"a": a, "b": b}, labels, present=present, batch_size=32, shuffle=True,
                          seed=seed).to(device)
    val = TensorBatches({"a": a[:48], "b": b[:48]}, labels[:48],
                        present={"b": present["b"][:48]}, batch_size=32).to(device)
    return train, val


def toy_model(fusion: str = "concat") -> MultimodalClassifier:
    torch.manual_seed(0)
    kwargs = {"heads": 2} if fusion in ("attention", "cross") else {}
    out_dim = 3 if fusion == "late" else 8
    return MultimodalClassifier({"a": None, "b": None},
                                make_fusion(fusion, {"a": 4, "b": 3}, out_dim, **kwargs), 3)


# ---------------------------------------------------------------- early stopping

def test_patience_stops_when_validation_accuracy_stalls():
    train, val = toy_loaders()
    model = toy_model()
    # lr 0: the validation accuracy never improves after the first epoch
    history = fit(model, train, val, epochs=10, lr=0.0, patience=2, device="cpu")
    assert isinstance(history, History)
    assert history.stopped_early is True
    assert len(history.train_loss) == len(history.val_accuracy) == 3  # best epoch + 2 stale
    assert history.best_epoch == 0


def test_patience_lets_an_improving_model_train_on():
    train, val = toy_loaders()
    history = fit(toy_model(), train, val, epochs=4, lr=1e-2, patience=4, device="cpu")
    assert history.stopped_early is False and len(history.train_loss) == 4


def test_without_patience_every_epoch_runs():
    train, val = toy_loaders()
    history = fit(toy_model(), train, val, epochs=4, lr=0.0, device="cpu")
    assert history.stopped_early is False and len(history.train_loss) == 4
    # patience needs a validation loader; without one, it never stops
    history = fit(toy_model(), train, None, epochs=3, lr=0.0, patience=1, device="cpu")
    assert history.stopped_early is False and len(history.train_loss) == 3


def test_early_stopping_keeps_the_best_weights():
    train, val = toy_loaders()
    model = toy_model()
    history = fit(model, train, val, epochs=6, lr=5e-2, patience=1, device="cpu")
    assert evaluate(model, val)["accuracy"] == pytest.approx(max(history.val_accuracy))


@pytest.mark.parametrize("patience", [0, -1, 1.5, True, "2"])
def test_bad_patience_raises(patience):
    train, val = toy_loaders()
    with pytest.raises(ValueError, match=r"patience must be a positive integer or None, got"):
        fit(toy_model(), train, val, epochs=2, patience=patience, device="cpu")


# ---------------------------------------------------------------- mixed precision

class DtypeSpy(nn.Module):
    """A classifier that records the dtype its linear layer computes in."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.dtypes = set()

    def forward(self, batch):
        out = self.linear(batch["a"])
        self.dtypes.add(out.dtype)
        return out


def test_bf16_autocast_on_cpu_trains_with_a_finite_loss():
    train, val = toy_loaders()
    spy = DtypeSpy()
    fit(spy, train, epochs=1, lr=1e-2, amp="bf16", device="cpu")
    assert spy.dtypes == {torch.bfloat16}  # autocast really ran
    model = toy_model()
    history = fit(model, train, val, epochs=6, lr=1e-2, amp="bf16", device="cpu")
    assert all(math.isfinite(x) for x in history.train_loss)
    assert history.train_loss[-1] < history.train_loss[0]
    assert max(history.val_accuracy) > 0.8
    # the weights stay float32: autocast only changes how operations compute
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # evaluation is in float32 again
    spy.dtypes.clear()
    evaluate(spy, val)
    assert spy.dtypes == {torch.float32}


def test_without_amp_training_is_float32():
    train, _ = toy_loaders()
    spy = DtypeSpy()
    fit(spy, train, epochs=1, device="cpu")
    assert spy.dtypes == {torch.float32}


def test_fp16_on_cpu_raises_a_clear_error():
    train, val = toy_loaders()
    with pytest.raises(ValueError, match=r"amp='fp16' needs a CUDA device .* use amp='bf16'"):
        fit(toy_model(), train, val, epochs=1, amp="fp16", device="cpu")


@pytest.mark.parametrize("amp", ["bogus", "float16", True, 16])
def test_unknown_amp_raises(amp):
    train, _ = toy_loaders()
    with pytest.raises(ValueError, match=r"amp must be one of \(None, 'auto', 'bf16', 'fp16'\), got"):
        fit(toy_model(), train, epochs=1, amp=amp, device="cpu")


@pytest.mark.parametrize("fast, expected", [(True, "bf16"), (False, None)])
def test_auto_amp_follows_the_hardware(monkeypatch, fast, expected):
    import mmcourse.training as training
    monkeypatch.setattr(training, "fast_bfloat16", lambda device=None: fast)
    assert training.resolve_amp("auto", "cpu") == expected
    for given in (None, "bf16"):
        assert training.resolve_amp(given, "cpu") == given
    train, val = toy_loaders()
    history = fit(toy_model(), train, val, epochs=1, amp="auto", device="cpu")
    assert len(history.train_loss) == 1


def test_fast_bfloat16_answers_for_the_cpu():
    from mmcourse.device import fast_bfloat16
    assert fast_bfloat16("cpu") in (True, False)


# ---------------------------------------------------------------- evaluate

class Fixed(nn.Module):
    """Returns the logits stored in the batch."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return batch["logits"]


def fixed_loader(predictions, labels, num_classes=3, batch_size=3):
    logits = F.one_hot(torch.tensor(predictions), num_classes).float() * 2.0
    logits[0, 0] += 0.5  # rows that differ, so the loss is not the same for every sample
    return TensorBatches({"logits": logits}, torch.tensor(labels), batch_size=batch_size)


def test_evaluate_on_a_known_case():
    preds = [0, 0, 1, 2, 2, 2, 1]
    labels = [0, 1, 1, 2, 2, 0, 1]
    loader = fixed_loader(preds, labels)  # batches of 3, 3, 1: the loss must weigh samples
    result = evaluate(Fixed(), loader, device="cpu")
    assert set(result) == {"accuracy", "loss", "confusion", "per_class_accuracy", "n"}
    assert result["n"] == 7
    assert result["accuracy"] == pytest.approx(5 / 7)
    expected = torch.tensor([[1, 0, 1],   # rows: true class, columns: predicted class
                             [1, 2, 0],
                             [0, 0, 2]])
    assert torch.equal(result["confusion"], expected)
    assert result["confusion"].sum() == 7
    assert result["per_class_accuracy"] == pytest.approx([1 / 2, 2 / 3, 1.0])
    logits = torch.cat([b["logits"] for b in loader])
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item())
    assert isinstance(result["accuracy"], float) and isinstance(result["loss"], float)


def test_evaluate_with_more_classes_than_outputs_and_a_class_without_samples():
    result = evaluate(Fixed(), fixed_loader([0, 1, 1], [0, 1, 0]), num_classes=4, device="cpu")
    assert result["confusion"].shape == (4, 4)
    per_class = result["per_class_accuracy"]
    assert per_class[:2] == pytest.approx([0.5, 1.0])
    assert math.isnan(per_class[2]) and math.isnan(per_class[3])


def test_evaluate_puts_the_model_in_eval_mode_and_needs_batches():
    model = toy_model()
    model.train()
    _, val = toy_loaders()
    evaluate(model, val, device="cpu")
    assert not model.training
    with pytest.raises(ValueError, match="loader yielded no batches"):
        evaluate(model, [], device="cpu")


def test_evaluate_a_trained_model_agrees_with_its_history():
    train, val = toy_loaders()
    model = toy_model("gated")
    history = fit(model, train, val, epochs=3, lr=1e-2, device="cpu")
    result = evaluate(model, val, device="cpu")
    assert result["accuracy"] == pytest.approx(history.val_accuracy[history.best_epoch])
    assert result["confusion"].sum() == result["n"] == 48
    assert result["confusion"].diag().sum() / 48 == pytest.approx(result["accuracy"])


# ---------------------------------------------------------------- CUDA

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
@pytest.mark.parametrize("on_gpu", [False, True])
def test_fit_and_evaluate_on_cuda(amp, on_gpu):
    # batches on the CPU (fit moves them) or already on the GPU
    train, val = toy_loaders(device="cuda" if on_gpu else "cpu")
    model = toy_model("attention")
    history = fit(model, train, val, epochs=6, lr=1e-2, amp=amp, patience=3, device="cuda")
    assert next(model.parameters()).is_cuda
    assert all(math.isfinite(x) for x in history.train_loss)
    result = evaluate(model, val, device="cuda")
    assert result["confusion"].device.type == "cpu" and result["n"] == 48
    assert result["accuracy"] == pytest.approx(history.val_accuracy[history.best_epoch])
    assert result["accuracy"] > 0.6


# ------------------------------------------------------------------ no number from bad outputs

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("measure", [accuracy, evaluate])
def test_non_finite_logits_raise_instead_of_giving_an_accuracy(bad, measure):
    loader = fixed_loader([0, 1, 2], [0, 1, 2])
    loader.data["logits"][1, 2] = bad
    with pytest.raises(FloatingPointError, match=r"non-finite logits \((nan|inf|-inf)\) for 1 of 3 "
                                                 r"samples.*first rows \[1\].*expected finite"):
        measure(Fixed(), loader, device="cpu")


@pytest.mark.parametrize("measure", [accuracy, evaluate])
@pytest.mark.parametrize("label", [3, -1])
def test_labels_outside_the_classes_raise(measure, label):
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\), got \[{label}\].*3 outputs"):
        measure(Fixed(), fixed_loader([0, 1, 2], [0, label, 2]), device="cpu")


def test_evaluate_checks_labels_against_a_smaller_num_classes():
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\), got \[2\]"):
        evaluate(Fixed(), fixed_loader([0, 1, 2], [0, 1, 2]), num_classes=2, device="cpu")


def test_fit_stops_instead_of_keeping_a_best_epoch_by_a_nan_accuracy():
    train, val = toy_loaders()

    class NaNAfterTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = toy_model()

        def forward(self, batch):
            logits = self.inner(batch)
            return logits if self.training else logits * float("nan")

    with pytest.raises(FloatingPointError, match="non-finite logits"):
        fit(NaNAfterTraining(), train, val, epochs=2, device="cpu")
