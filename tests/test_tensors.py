"""mmcourse.data.tensors: TensorBatches and as_loader."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from mmcourse.data.dataset import MultimodalDataset
from mmcourse.data.tensors import TensorBatches, as_loader

N = 10


pytestmark = pytest.mark.usefixtures("one_thread")


def data():
    image = torch.arange(N * 3, dtype=torch.float32).view(N, 3)
    tokens = torch.arange(N * 4).view(N, 4)
    positions = torch.arange(4)[None, :] < (torch.arange(N) % 4 + 1)[:, None]
    return {"image": image, "text": (tokens, positions), "text_lengths": positions.sum(1)}


def labels():
    return torch.arange(N) % 3


def present():
    return {"text": torch.arange(N) % 2 == 0}


def rows(batch) -> list[int]:
    """The sample index of each row (image row i holds 3i, 3i + 1, 3i + 2)."""
    return (batch["image"][:, 0] / 3).long().tolist()


def epoch_order(loader) -> list[int]:
    return [i for batch in loader for i in rows(batch)]


def test_batches_have_the_right_shapes_and_content():
    loader = TensorBatches(data(), labels(), present=present(), batch_size=4)
    assert len(loader) == 3 and loader.n == N
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [4, 4, 2]
    first = batches[0]
    assert set(first) == {"image", "text", "text_lengths", "label", "present"}
    assert first["image"].shape == (4, 3)
    assert isinstance(first["text"], tuple) and len(first["text"]) == 2
    tokens, positions = first["text"]
    assert tokens.shape == (4, 4) and positions.dtype == torch.bool and positions.shape == (4, 4)
    assert first["text_lengths"].tolist() == [1, 2, 3, 4]
    assert first["label"].dtype == torch.int64 and first["label"].tolist() == [0, 1, 2, 0]
    assert first["present"]["text"].tolist() == [True, False, True, False]
    assert set(first["present"]) == {"text"}
    # without shuffling, the rows come in order and every row once
    assert epoch_order(loader) == list(range(N))
    # rows stay aligned across keys
    for batch in batches:
        idx = torch.tensor(rows(batch))
        assert torch.equal(batch["text"][0], data()["text"][0][idx])
        assert torch.equal(batch["label"], labels()[idx])
        assert torch.equal(batch["present"]["text"], present()["text"][idx])


def test_lists_stay_lists_and_labels_may_be_lists_or_none():
    d = data()
    d["text"] = list(d["text"])
    loader = TensorBatches(d, labels().tolist(), batch_size=N)
    batch = next(iter(loader))
    assert isinstance(batch["text"], list) and batch["label"].tolist() == labels().tolist()
    assert "present" not in batch
    unlabelled = next(iter(TensorBatches(d, batch_size=3)))
    assert "label" not in unlabelled


def test_shuffle_is_reproducible_per_seed_and_new_every_epoch():
    a = TensorBatches(data(), labels(), batch_size=3, shuffle=True, seed=0)
    b = TensorBatches(data(), labels(), batch_size=3, shuffle=True, seed=0)
    c = TensorBatches(data(), labels(), batch_size=3, shuffle=True, seed=1)
    epochs_a = [epoch_order(a) for _ in range(3)]
    epochs_b = [epoch_order(b) for _ in range(3)]
    assert epochs_a == epochs_b                             # same seed, same sequence of epochs
    assert all(sorted(e) == list(range(N)) for e in epochs_a)  # each epoch: every row once
    assert epochs_a[0] != epochs_a[1] or epochs_a[1] != epochs_a[2]  # a new order per epoch
    assert len({tuple(e) for e in epochs_a}) > 1
    assert epoch_order(c) != epochs_a[0]                    # another seed, another order
    assert epochs_a[0] != list(range(N))
    # labels and present follow the same shuffle
    batch = next(iter(TensorBatches(data(), labels(), present=present(), batch_size=5,
                                    shuffle=True, seed=3)))
    idx = torch.tensor(rows(batch))
    assert torch.equal(batch["label"], labels()[idx])
    assert torch.equal(batch["present"]["text"], present()["text"][idx])


def test_drop_last():
    loader = TensorBatches(data(), labels(), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b["label"]) for b in loader] == [4, 4]
    assert len(TensorBatches(data(), labels(), batch_size=5, drop_last=True)) == 2
    assert len(TensorBatches(data(), labels(), batch_size=20, drop_last=True)) == 0
    assert list(TensorBatches(data(), labels(), batch_size=20, drop_last=True)) == []
    assert len(TensorBatches(data(), labels(), batch_size=20)) == 1
    shuffled = TensorBatches(data(), labels(), batch_size=3, drop_last=True, shuffle=True)
    assert len(list(shuffled)) == len(shuffled) == 3


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(data={}), ValueError, r"data must be a non-empty dict"),
    (dict(data=[torch.zeros(3)]), ValueError, r"data must be a non-empty dict"),
    (dict(data={"label": torch.zeros(N)}), ValueError,
     r"'label' is reserved; pass labels and present separately"),
    (dict(data={"image": torch.zeros(N), "present": torch.zeros(N)}), ValueError,
     r"'present' is reserved"),
    (dict(data={"image": torch.zeros(N), "text": torch.zeros(N + 1)}), ValueError,
     r"every tensor needs the same number of rows \(samples\); got image 10, text 11"),
    (dict(data={"image": torch.zeros(N)}, labels=torch.zeros(N - 1, dtype=torch.long)), ValueError,
     r"got image 10, labels 9"),
    (dict(data={"image": torch.zeros(N)}, present={"image": torch.ones(3, dtype=torch.bool)}),
     ValueError, r"got image 10, present\[image\] 3"),
    (dict(data={"text": (torch.zeros(N, 2), torch.zeros(N + 2, 2))}), ValueError,
     r"the tensors of a tuple must have the same number of rows, got \[10, 12\]"),
    (dict(data={"image": torch.zeros(N)}, labels=torch.zeros(N)), ValueError,
     r"labels must be integer class indices of shape \(N,\), got shape \(10,\) and dtype "
     r"torch.float32"),
    (dict(data={"image": torch.zeros(N)}, labels=torch.zeros(N, 2, dtype=torch.long)), ValueError,
     r"labels must be integer class indices of shape \(N,\), got shape \(10, 2\)"),
    (dict(data={"image": torch.zeros(N)}, present={"text": torch.ones(N, dtype=torch.bool)}),
     ValueError, r"present names 'text', which is not in data \['image'\]"),
    (dict(data={"image": torch.zeros(N)}, present={"image": torch.ones(N)}), ValueError,
     r"present\['image'\] must be bool \(N,\), got shape \(10,\) and dtype torch.float32"),
    (dict(data={"image": torch.zeros(N)}, batch_size=0), ValueError,
     r"batch_size must be a positive integer, got 0"),
    (dict(data={"image": torch.zeros(N)}, batch_size=True), ValueError,
     r"batch_size must be a positive integer, got True"),
    (dict(data={"image": torch.zeros(0, 3)}), ValueError, r"the data has no samples"),
    (dict(data={"image": torch.tensor(1.0)}), ValueError, r"a 0-d tensor has no samples"),
    (dict(data={"image": [[1.0, 2.0]]}), TypeError,
     r"expected a tensor or a tuple of tensors, got list"),
    (dict(data={"image": "pixels"}), TypeError,
     r"expected a tensor or a tuple of tensors, got str"),
])
def test_bad_input_raises(kwargs, error, message):
    with pytest.raises(error, match=message):
        TensorBatches(**kwargs)


def test_to_moves_everything_and_returns_self():
    loader = TensorBatches(data(), labels(), present=present(), batch_size=4)
    assert loader.to("cpu") is loader
    batch = next(iter(loader))
    assert batch["image"].device.type == "cpu" and isinstance(batch["text"], tuple)
    assert batch["label"].device.type == "cpu" and batch["present"]["text"].device.type == "cpu"
    assert epoch_order(loader) == list(range(N))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_keeps_batches_on_the_gpu():
    loader = TensorBatches(data(), labels(), present=present(), batch_size=4, shuffle=True)
    loader = loader.to("cuda")
    batch = next(iter(loader))
    assert batch["image"].is_cuda and batch["text"][0].is_cuda and batch["text"][1].is_cuda
    assert batch["label"].is_cuda and batch["present"]["text"].is_cuda


def test_as_loader_with_tensors():
    loader = as_loader(data(), labels(), present=present(), batch_size=4, shuffle=True, seed=2)
    assert isinstance(loader, TensorBatches) and loader.shuffle and len(loader) == 3
    again = as_loader(data(), labels(), present=present(), batch_size=4, shuffle=True, seed=2)
    assert epoch_order(loader) == epoch_order(again)


def test_as_loader_with_a_dataset():
    texts = [torch.arange(1 + i % 3) for i in range(N)]
    ds = MultimodalDataset({"image": torch.rand(N, 3), "text": texts}, labels=labels(),
                           present=present())
    loader = as_loader(ds, batch_size=4)
    assert isinstance(loader, DataLoader) and len(loader) == 3
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3) and batch["text_lengths"].tolist() == [1, 2, 3, 1]
    assert batch["label"].tolist() == [0, 1, 2, 0]
    assert batch["present"]["text"].tolist() == [True, False, True, False]
    # shuffled with a seed: reproducible
    first = [b["label"].tolist() for b in as_loader(ds, batch_size=4, shuffle=True, seed=1)]
    second = [b["label"].tolist() for b in as_loader(ds, batch_size=4, shuffle=True, seed=1)]
    assert first == second
    # a custom collate function
    custom = as_loader(ds, batch_size=4, collate_fn=lambda samples: len(samples))
    assert list(custom) == [4, 4, 2]
    message = "with a Dataset, labels and present come from its samples"
    with pytest.raises(ValueError, match=message):
        as_loader(ds, labels())
    with pytest.raises(ValueError, match=message):
        as_loader(ds, present=present())
