"""mmcourse.training: to_device, fit, predict, accuracy, confusion_matrix, UnimodalClassifier."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mmcourse import seed_everything
from mmcourse.data.dataset import MultimodalDataset, collate_multimodal
from mmcourse.training import (History, UnimodalClassifier, accuracy, confusion_matrix, fit,
                               predict, to_device)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class MeanEncoder(nn.Module):
    """Features = a linear map of the mean of each (B, 2, L) sample: a tiny, learnable encoder."""

    out_dim = 4

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, self.out_dim)
        self.seen_lengths = None

    def forward(self, x, lengths=None):
        self.seen_lengths = lengths
        return self.linear(x.mean(dim=-1))


def separable_data(n: int = 64, seed: int = 0) -> MultimodalDataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    x = torch.randn(n, 2, 5, generator=gen) * 0.3
    x[:, 0] += 2.0 * labels[:, None] - 1.0  # the sign of channel 0 gives the class
    return MultimodalDataset({"signal": x}, labels)


def loaders(seed: int = 0, batch_size: int = 16):
    gen = seed_everything(seed)
    train = DataLoader(separable_data(64, 1), batch_size=batch_size, shuffle=True,
                       collate_fn=collate_multimodal, generator=gen)
    val = DataLoader(separable_data(32, 2), batch_size=batch_size, collate_fn=collate_multimodal)
    return train, val


# ---------------------------------------------------------------- to_device

def test_to_device_moves_nested_tensors_and_keeps_the_rest():
    batch = {"image": torch.zeros(2, 3), "text": ["a", "b"], "label": torch.tensor([0, 1]),
             "present": {"image": torch.tensor([True, False])}, "pair": (torch.ones(1), torch.ones(2)),
             "n": 3}
    moved = to_device(batch, "cpu")
    assert moved["text"] == ["a", "b"] and moved["n"] == 3
    assert isinstance(moved["pair"], tuple) and len(moved["pair"]) == 2
    assert moved["present"]["image"].tolist() == [True, False]
    assert to_device([], "cpu") == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_device_cuda():
    moved = to_device({"x": torch.zeros(2), "present": {"x": torch.ones(2)}}, "cuda")
    assert moved["x"].is_cuda and moved["present"]["x"].is_cuda


# ---------------------------------------------------------------- fit / predict / accuracy

@pytest.mark.parametrize("device", DEVICES)
def test_fit_learns_a_separable_problem(device):
    train, val = loaders()
    seed_everything(0)
    model = UnimodalClassifier(MeanEncoder(), "signal", num_classes=2)
    history = fit(model, train, val, epochs=15, lr=0.05, device=device)
    assert isinstance(history, History)
    assert len(history.train_loss) == 15 and len(history.val_accuracy) == 15
    assert history.train_loss[-1] < history.train_loss[0]
    assert max(history.val_accuracy) == 1.0
    assert history.best_epoch == history.val_accuracy.index(1.0)
    assert accuracy(model, val, device=device) == 1.0
    assert "best val_accuracy=1.000" in repr(history)


def test_fit_is_reproducible_with_a_seed():
    losses = []
    for _ in range(2):
        train, val = loaders(seed=3)
        seed_everything(3)
        model = UnimodalClassifier(MeanEncoder(), "signal", num_classes=2)
        losses.append(fit(model, train, val, epochs=2, lr=0.05, device="cpu").train_loss)
    assert losses[0] == losses[1]


def test_fit_keep_best_restores_the_best_epoch():
    """With keep_best the final weights give the best validation accuracy seen."""
    train, val = loaders()
    seed_everything(0)
    model = UnimodalClassifier(MeanEncoder(), "signal", num_classes=2)
    # a huge learning rate makes later epochs worse than the best one
    history = fit(model, train, val, epochs=6, lr=50.0, device="cpu")
    assert accuracy(model, val, device="cpu") == pytest.approx(max(history.val_accuracy))


def test_fit_without_validation_and_with_own_optimizer():
    train, _ = loaders()
    seed_everything(0)
    model = UnimodalClassifier(MeanEncoder(), "signal", num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    history = fit(model, train, epochs=3, optimizer=opt, device="cpu")
    assert history.val_accuracy == [] and history.best_epoch == 2
    assert "train_loss=" in repr(history)
    assert repr(History()) == "History(0 epochs, not trained)"


def test_fit_custom_loss_is_used():
    train, _ = loaders()
    calls = []

    def loss_fn(logits, labels):
        calls.append(len(labels))
        return nn.functional.cross_entropy(logits, labels)

    fit(UnimodalClassifier(MeanEncoder(), "signal", 2), train, epochs=1, loss_fn=loss_fn,
        device="cpu")
    assert sum(calls) == 64


@pytest.mark.parametrize("epochs", [0, -1, 1.5, "3"])
def test_fit_rejects_bad_epochs(epochs):
    train, _ = loaders()
    with pytest.raises(ValueError, match="positive integer"):
        fit(UnimodalClassifier(MeanEncoder(), "signal", 2), train, epochs=epochs)


def test_fit_errors_for_empty_loader_and_missing_labels():
    model = UnimodalClassifier(MeanEncoder(), "signal", 2)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, [], epochs=1, device="cpu")
    with pytest.raises(KeyError, match="'label'"):
        fit(model, [{"signal": torch.zeros(2, 2, 5)}], epochs=1, device="cpu")


def test_predict_returns_cpu_int64_in_loader_order():
    _, val = loaders()
    model = UnimodalClassifier(MeanEncoder(), "signal", 2)
    preds, labels = predict(model, val, device="cpu")
    assert preds.dtype == labels.dtype == torch.int64
    assert preds.shape == labels.shape == (32,)
    assert labels.tolist() == [i % 2 for i in range(32)]
    assert not model.training  # predict leaves the model in eval mode
    with pytest.raises(ValueError, match="no batches"):
        predict(model, [], device="cpu")


def test_accuracy_counts_correct_predictions():
    class Constant(nn.Module):
        def forward(self, batch):
            return torch.tensor([[1.0, 0.0]]).repeat(len(batch["label"]), 1)  # always class 0

    batches = [{"label": torch.tensor([0, 0, 1])}, {"label": torch.tensor([1])}]
    assert accuracy(Constant(), batches, device="cpu") == pytest.approx(0.5)


# ---------------------------------------------------------------- confusion_matrix

def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 2, 0]), 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]
    assert cm.sum() == 5
    assert confusion_matrix([1, 0], [1, 1], 2).tolist() == [[0, 0], [1, 1]]  # lists work too
    assert confusion_matrix(torch.tensor([], dtype=torch.long),
                            torch.tensor([], dtype=torch.long), 2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("preds, labels, message", [
    (torch.tensor([0, 1]), torch.tensor([0]), "equal length"),
    (torch.zeros(2, 2), torch.zeros(2, 2), "1-D"),
    (torch.tensor([0, 3]), torch.tensor([0, 1]), r"in \[0, 3\)"),
    (torch.tensor([0, 1]), torch.tensor([-1, 1]), r"in \[0, 3\)"),
])
def test_confusion_matrix_rejects_bad_input(preds, labels, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(preds, labels, 3)


# ---------------------------------------------------------------- UnimodalClassifier

def test_unimodal_classifier_passes_lengths_when_the_batch_has_them():
    encoder = MeanEncoder()
    model = UnimodalClassifier(encoder, "signal", 3)
    x = torch.zeros(2, 2, 5)
    assert model({"signal": x}).shape == (2, 3)
    assert encoder.seen_lengths is None
    lengths = torch.tensor([5, 3])
    model({"signal": x, "signal_lengths": lengths})
    assert encoder.seen_lengths is lengths


def test_unimodal_classifier_errors():
    with pytest.raises(TypeError, match="no out_dim"):
        UnimodalClassifier(nn.Linear(2, 2), "signal", 2)
    model = UnimodalClassifier(MeanEncoder(), "signal", 2)
    with pytest.raises(KeyError, match=r"reads modality 'signal'.*\['image'\]"):
        model({"image": torch.zeros(1), "label": torch.zeros(1), "present": {}})
