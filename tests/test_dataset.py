"""Tests of mmcourse.data.dataset: MultimodalDataset, collate_multimodal and make_collate."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmcourse.data.collate import make_collate
from mmcourse.data.dataset import MultimodalDataset, collate_multimodal

N = 6


def to_float(image: torch.Tensor) -> torch.Tensor:
    """Module-level transform (picklable, for DataLoader workers)."""
    return image.float() / 255


def make_dataset(**kwargs) -> MultimodalDataset:
    """Six samples: uint8 images, waveforms of lengths 3..8, strings."""
    rng = np.random.default_rng(0)
    data = {
        "image": rng.integers(0, 256, size=(N, 3, 4, 4), dtype=np.uint8),
        "audio": [torch.full((3 + i,), float(i + 1)) for i in range(N)],
        "text": [f"sample {i}" for i in range(N)],
    }
    return MultimodalDataset(data, labels=np.array([0, 1, 2, 0, 1, 2]), **kwargs)


# --------------------------------------------------------------------------------------------
# MultimodalDataset
# --------------------------------------------------------------------------------------------

def test_getitem_structure_and_dtypes():
    ds = make_dataset()
    assert len(ds) == N
    assert ds.modalities == ("image", "audio", "text")
    assert ds.num_classes == 3
    sample = ds[2]
    assert set(sample) == {"image", "audio", "text", "label", "present"}
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 4, 4)
    assert sample["audio"].shape == (5,) and sample["audio"].dtype == torch.float32
    assert sample["text"] == "sample 2"
    assert sample["label"].dtype == torch.int64 and sample["label"].dim() == 0
    assert sample["label"].item() == 2
    assert sample["present"] == {"image": True, "audio": True, "text": True}
    assert all(type(v) is bool for v in sample["present"].values())
    assert ds[-1]["text"] == "sample 5"
    assert ds[np.int64(1)]["text"] == "sample 1"
    assert ds[torch.tensor(1)]["text"] == "sample 1"


def test_float_tensors_numpy_items_and_token_lists():
    images = torch.rand(3, 1, 2, 2)
    ds = MultimodalDataset(
        {
            "image": images,
            "audio": [np.zeros(4, dtype=np.float32), np.ones(2, dtype=np.float32), np.ones(7, dtype=np.float32)],
            "text": [[1, 2, 3], [4], [5, 6]],
        },
        labels=torch.tensor([0, 1, 0]),
    )
    assert torch.equal(ds[0]["image"], images[0])
    assert isinstance(ds[1]["audio"], torch.Tensor) and ds[1]["audio"].dtype == torch.float32
    assert ds[0]["text"].dtype == torch.int64 and ds[0]["text"].tolist() == [1, 2, 3]


def test_any_modality_names():
    ds = MultimodalDataset({"video": torch.zeros(2, 4, 3, 8, 8), "tabular": np.ones((2, 5))}, labels=[1, 0])
    assert ds.modalities == ("video", "tabular")
    assert ds[0]["tabular"].dtype == torch.float64
    assert ds[0]["present"] == {"video": True, "tabular": True}


def test_items_are_copies_so_inplace_transforms_do_not_change_the_data():
    ds = MultimodalDataset({"x": torch.zeros(2, 3)}, labels=[0, 1], transforms={"x": lambda t: t.add_(1)})
    ds[0]
    assert ds[0]["x"].tolist() == [1.0, 1.0, 1.0]


def test_present_masks():
    ds = make_dataset(present={"audio": [True, False, True, True, False, True], "text": np.ones(N, dtype=bool)})
    assert ds[1]["present"] == {"image": True, "audio": False, "text": True}
    assert ds[1]["audio"].shape == (4,)  # content still there
    assert ds[0]["present"]["audio"] is True
    assert "2 missing" in repr(ds)


def test_transforms():
    ds = make_dataset(transforms={"image": to_float, "text": str.upper})
    sample = ds[0]
    assert sample["image"].dtype == torch.float32
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    assert sample["text"] == "SAMPLE 0"
    assert make_dataset()[0]["image"].dtype == torch.uint8


def test_subset():
    ds = make_dataset(present={"audio": [False] * N}, transforms={"image": to_float})
    image_only = ds.subset("image")
    assert image_only.modalities == ("image",)
    assert set(image_only[0]) == {"image", "label", "present"}
    assert image_only[0]["image"].dtype == torch.float32
    assert image_only[0]["present"] == {"image": True}
    pair = ds.subset(["text", "audio"])
    assert pair.modalities == ("text", "audio")
    assert pair[3]["present"] == {"text": True, "audio": False}
    assert torch.equal(pair.labels, ds.labels)
    with pytest.raises(ValueError, match="'video'"):
        ds.subset(["image", "video"])
    with pytest.raises(ValueError, match="at least one"):
        ds.subset([])


def test_repr_summarises_sizes():
    text = repr(make_dataset(transforms={"image": to_float}))
    assert "6 samples" in text and "3 classes" in text
    assert "(6, 3, 4, 4)" in text and "torch.uint8" in text
    assert "3..8" in text and "6 strings" in text and "transformed" in text


# --------------------------------------------------------------------------------------------
# Errors of MultimodalDataset
# --------------------------------------------------------------------------------------------

def test_error_empty_data():
    with pytest.raises(ValueError, match="at least one modality"):
        MultimodalDataset({}, labels=[0])


def test_error_zero_samples():
    with pytest.raises(ValueError, match="zero samples"):
        MultimodalDataset({"image": torch.zeros(0, 3, 2, 2)}, labels=[])


def test_error_lengths_disagree_lists_every_length():
    with pytest.raises(ValueError) as info:
        MultimodalDataset({"image": torch.zeros(4, 3), "audio": [torch.zeros(2)] * 3}, labels=[0, 1, 0, 1, 0])
    message = str(info.value)
    assert "image: 4" in message and "audio: 3" in message and "labels: 5" in message


@pytest.mark.parametrize(
    "labels, fragment",
    [
        ([0.0, 1.0], "float64"),
        (torch.tensor([0.5, 1.0]), "torch.float32"),
        (["cat", "dog"], "encode_labels"),
        (np.array([True, False]), "bool"),
        (torch.tensor([True, False]), "bool"),
        (np.array([[0], [1]]), r"shape \(2, 1\)"),
    ],
)
def test_error_labels_not_1d_integers(labels, fragment):
    with pytest.raises((TypeError, ValueError), match=fragment):
        MultimodalDataset({"x": torch.zeros(2, 3)}, labels=labels)


def test_error_negative_labels():
    with pytest.raises(ValueError, match=r"\[-1\]"):
        MultimodalDataset({"x": torch.zeros(3, 3)}, labels=[0, -1, 1])


def test_error_present_unknown_modality():
    with pytest.raises(ValueError, match="'audio'.*not in data"):
        MultimodalDataset({"image": torch.zeros(2, 3)}, labels=[0, 1], present={"audio": [True, False]})


def test_error_present_wrong_length():
    with pytest.raises(ValueError, match=r"present\['image'\].*\(2,\).*\(3,\)"):
        MultimodalDataset({"image": torch.zeros(2, 3)}, labels=[0, 1], present={"image": [True, False, True]})


def test_error_present_wrong_dtype():
    with pytest.raises(TypeError, match=r"present\['image'\].*int64"):
        MultimodalDataset({"image": torch.zeros(2, 3)}, labels=[0, 1], present={"image": np.array([1, 0])})


def test_error_transform_unknown_modality():
    with pytest.raises(ValueError, match="'audio'.*not in data"):
        MultimodalDataset({"image": torch.zeros(2, 3)}, labels=[0, 1], transforms={"audio": to_float})


def test_error_transform_not_callable():
    with pytest.raises(TypeError, match="callable"):
        MultimodalDataset({"image": torch.zeros(2, 3)}, labels=[0, 1], transforms={"image": 3})


@pytest.mark.parametrize("name", ["", 3, None])
def test_error_modality_name_not_a_nonempty_str(name):
    with pytest.raises(TypeError, match="non-empty strings"):
        MultimodalDataset({name: torch.zeros(2, 3)}, labels=[0, 1])


@pytest.mark.parametrize("name", ["label", "present"])
def test_error_reserved_modality_names(name):
    with pytest.raises(ValueError, match=f"'{name}'.*reserved"):
        MultimodalDataset({name: torch.zeros(2, 3)}, labels=[0, 1])


def test_error_index_out_of_range():
    ds = make_dataset()
    with pytest.raises(IndexError, match="index 6 is out of range.*6 samples"):
        ds[6]
    with pytest.raises(IndexError, match="-7"):
        ds[-7]
    with pytest.raises(TypeError, match="integer"):
        ds[1.5]


def test_error_bad_containers():
    with pytest.raises(TypeError, match="'text'.*str"):
        MultimodalDataset({"text": "hello"}, labels=[0])
    with pytest.raises(TypeError, match="'text'.*mixes strings and tensors.*sample 1"):
        MultimodalDataset({"text": [torch.zeros(2), "b"]}, labels=[0, 1])
    with pytest.raises(TypeError, match="'audio', sample 1.*dict"):
        MultimodalDataset({"audio": [torch.zeros(2), {"a": 1}]}, labels=[0, 1])


# --------------------------------------------------------------------------------------------
# Collate
# --------------------------------------------------------------------------------------------

def test_collate_stacks_pads_and_keeps_strings():
    ds = make_dataset(present={"audio": [True, False, True, True, True, True]})
    batch = collate_multimodal([ds[0], ds[1], ds[2]])
    assert batch["image"].shape == (3, 3, 4, 4) and batch["image"].dtype == torch.uint8
    assert batch["audio"].shape == (3, 5)
    assert batch["audio_lengths"].dtype == torch.int64
    assert batch["audio_lengths"].tolist() == [3, 4, 5]
    assert batch["audio"][0].tolist() == [1, 1, 1, 0, 0]
    assert batch["audio"][2].tolist() == [3, 3, 3, 3, 3]
    assert batch["text"] == ["sample 0", "sample 1", "sample 2"]
    assert "text_lengths" not in batch and "image_lengths" not in batch
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 1, 2]
    assert batch["present"]["audio"].dtype == torch.bool
    assert batch["present"]["audio"].tolist() == [True, False, True]
    assert batch["present"]["image"].tolist() == [True, True, True]


def test_collate_equal_lengths_still_gives_lengths_for_audio_and_text():
    items = [{"audio": torch.ones(4), "text": torch.tensor([1, 2]), "label": torch.tensor(0),
              "present": {"audio": True, "text": True}}] * 2
    batch = collate_multimodal(items)
    assert batch["audio"].shape == (2, 4) and batch["audio_lengths"].tolist() == [4, 4]
    assert batch["text_lengths"].tolist() == [2, 2]


def test_collate_sequences_with_features_and_pad_values():
    collate = make_collate(pad_values={"text": 99, "mfcc": -1.0})
    items = [
        {"mfcc": torch.ones(2, 3), "text": torch.tensor([5, 6, 7]), "label": torch.tensor(1), "present": {"mfcc": True, "text": True}},
        {"mfcc": torch.ones(4, 3), "text": torch.tensor([8]), "label": torch.tensor(0), "present": {"mfcc": True, "text": False}},
    ]
    batch = collate(items)
    assert batch["mfcc"].shape == (2, 4, 3)
    assert batch["mfcc"][0, 2:].eq(-1).all() and batch["mfcc"][0, :2].eq(1).all()
    assert batch["mfcc_lengths"].tolist() == [2, 4]
    assert batch["text"].tolist() == [[5, 6, 7], [8, 99, 99]]
    assert batch["text"].dtype == torch.int64
    assert batch["text_lengths"].tolist() == [3, 1]
    assert batch["present"]["text"].tolist() == [True, False]


def test_collate_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        collate_multimodal([])


def test_collate_different_modality_sets():
    items = [
        {"image": torch.zeros(2), "audio": torch.zeros(3), "label": torch.tensor(0), "present": {}},
        {"image": torch.zeros(2), "text": "hi", "label": torch.tensor(0), "present": {}},
    ]
    with pytest.raises(ValueError, match=r"sample 1.*missing \['audio'\].*extra \['text'\]"):
        collate_multimodal(items)


def test_collate_trailing_dims_disagree():
    items = [{"audio": torch.zeros(5, 40), "label": torch.tensor(0)}, {"audio": torch.zeros(7, 64), "label": torch.tensor(0)}]
    with pytest.raises(ValueError, match=r"'audio'.*trailing.*\(40,\).*\(64,\)"):
        collate_multimodal(items)


def test_collate_different_ndims():
    items = [{"x": torch.zeros(5), "label": torch.tensor(0)}, {"x": torch.zeros(5, 2), "label": torch.tensor(0)}]
    with pytest.raises(ValueError, match="numbers of dimensions"):
        collate_multimodal(items)


def test_collate_mixed_types_and_dtypes():
    items = [{"text": "a", "label": torch.tensor(0)}, {"text": torch.tensor([1]), "label": torch.tensor(0)}]
    with pytest.raises(TypeError, match="'text' mixes types.*sample 0: str.*sample 1: Tensor"):
        collate_multimodal(items)
    items = [{"x": torch.zeros(2), "label": torch.tensor(0)}, {"x": torch.zeros(2, dtype=torch.float64), "label": torch.tensor(0)}]
    with pytest.raises(TypeError, match="'x' mixes dtypes"):
        collate_multimodal(items)


# --------------------------------------------------------------------------------------------
# With a DataLoader
# --------------------------------------------------------------------------------------------

def test_dataloader_single_process():
    ds = make_dataset(transforms={"image": to_float})
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_multimodal)
    batches = list(loader)
    assert [b["label"].shape[0] for b in batches] == [4, 2]
    assert batches[0]["image"].dtype == torch.float32
    assert batches[0]["audio"].shape == (4, 6)
    assert batches[1]["audio_lengths"].tolist() == [7, 8]
    assert batches[1]["text"] == ["sample 4", "sample 5"]


def test_dataset_and_collate_are_picklable():
    ds = make_dataset(transforms={"image": to_float}, present={"audio": [True, False] * 3})
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[1]["image"], ds[1]["image"])
    assert copy[1]["present"] == ds[1]["present"]
    collate = pickle.loads(pickle.dumps(make_collate(pad_values={"text": 3})))
    assert collate.pad_values == {"text": 3}


def test_dataloader_two_workers():
    ds = make_dataset(transforms={"image": to_float})
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=make_collate(pad_values={"audio": -1.0}))
    batches = list(loader)
    assert len(batches) == 2
    labels = torch.cat([b["label"] for b in batches])
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert batches[1]["audio"].shape == (3, 8)
    assert batches[1]["audio"][0, 6:].eq(-1).all()
    assert batches[1]["text"] == ["sample 3", "sample 4", "sample 5"]
