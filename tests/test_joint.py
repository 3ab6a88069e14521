"""mmcourse.joint: the joint model and its data, per sample or precomputed."""
from __future__ import annotations

import pytest
import torch

from mmcourse.fusion import FUSION_METHODS
from mmcourse.joint import (LogMelCNN, NaiveCourseDataset, PreparedDataset, SpeedData, build_model,
                            collate_padded)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return SpeedData.make(seed=0, size={"train": 96, "test": 32})


def test_naive_items_equal_precomputed_ones(data):
    """Per-sample and batched preprocessing give the same batches (same padding too)."""
    naive = NaiveCourseDataset(data.split("train"), data.tokenizer)
    prepared = PreparedDataset(data.prepare("train"))
    idx = list(range(10))
    a = collate_padded([naive[i] for i in idx])
    b = collate_padded([prepared[i] for i in idx])
    torch.testing.assert_close(a["audio"], b["audio"], atol=1e-4, rtol=1e-4)
    assert torch.equal(a["audio_lengths"], b["audio_lengths"])
    tokens = a["text"].shape[1]
    assert torch.equal(a["text"], b["text"][:, :tokens]) and (b["text"][:, tokens:] == 0).all()
    assert torch.equal(a["text_lengths"], b["text_lengths"])
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert all(torch.equal(a["present"][m], b["present"][m]) for m in a["present"])


@pytest.mark.parametrize("fusion", list(FUSION_METHODS))
def test_build_model_reads_a_prepared_batch_with_every_fusion(data, fusion):
    prepared = data.prepare("test")
    batch = {k: v[:4] for k, v in prepared.tensors.items()}
    batch["present"] = {m: v[:4] for m, v in prepared.present.items()}
    model = build_model(data.vocab_size, num_classes=8, dim=16, fusion=fusion).eval()
    assert model(batch).shape == (4, 8)  # late fusion fuses to the classes, the others to dim
    assert type(model.fusion) is FUSION_METHODS[fusion]


def test_build_model_and_data_name_what_exists(data):
    with pytest.raises(ValueError, match="unknown fusion method 'sum'"):
        build_model(data.vocab_size, fusion="sum")
    with pytest.raises(KeyError, match="unknown split 'dev'"):
        data.split("dev")


def test_logmel_cnn_rejects_waveforms_and_wrong_band_counts():
    encoder = LogMelCNN(out_dim=8)
    with pytest.raises(ValueError, match="expects float log-mels .* a waveform batch"):
        encoder(torch.zeros(2, 4000))
    with pytest.raises(ValueError, match="40 mel bands in the last dimension"):
        encoder(torch.zeros(2, 40, 30))
