"""mmcourse.classifier.MultimodalClassifier: encoders + fusion + head in one module."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.dataset import MultimodalDataset, collate_multimodal
from mmcourse.data.tensors import TensorBatches
from mmcourse.encoders.image import ImageCNN
from mmcourse.encoders.text import BagOfWordsEncoder
from mmcourse.fusion import FUSION_METHODS, make_fusion
from mmcourse.training import fit

C = 3
VOCAB = 12
FEATURE_DIMS = {"image": 6, "text": 4}
KWARGS = {"attention": {"heads": 2}, "cross": {"heads": 2}, "tensor": {"proj_dim": 3}}


pytestmark = pytest.mark.usefixtures("one_thread")


def fusion(name: str, dims=FEATURE_DIMS, out_dim: int = 8):
    torch.manual_seed(0)
    return make_fusion(name, dims, C if name == "late" else out_dim, **KWARGS.get(name, {}))


class PooledSpy(nn.Module):
    """Wraps an encoder, offers only its pooled view, and records the calls with their lengths."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder, self.out_dim, self.calls = encoder, encoder.out_dim, []

    def forward(self, x, lengths=None):
        self.calls.append(("forward", lengths))
        return self.encoder(x, lengths=lengths)


class Spy(PooledSpy):
    """A PooledSpy that also offers the encoder's ``sequence`` view."""

    def sequence(self, x, lengths=None):
        self.calls.append(("sequence", lengths))
        return self.encoder.sequence(x, lengths=lengths)


def encoders(spy: bool = True):
    torch.manual_seed(0)
    image = ImageCNN(channels=(4, 8), out_dim=6)
    text = BagOfWordsEncoder(VOCAB, out_dim=4)
    return ({"image": Spy(image), "text": Spy(text)} if spy else {"image": image, "text": text})


def raw_dataset(n: int = 6) -> MultimodalDataset:
    gen = torch.Generator().manual_seed(0)
    tokens = [torch.randint(4, VOCAB, (1 + i % 4,), generator=gen) for i in range(n)]
    present = {"text": [i % 3 != 1 for i in range(n)]}
    return MultimodalDataset({"image": torch.rand(n, 3, 16, 16, generator=gen), "text": tokens},
                             labels=[i % C for i in range(n)], present=present)


def raw_batch(n: int = 6) -> dict:
    ds = raw_dataset(n)
    return collate_multimodal([ds[i] for i in range(n)])


def feature_batch(n: int = 5, seed: int = 0, sequences: bool = False) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = {"label": torch.arange(n) % C,
             "present": {"image": torch.ones(n, dtype=torch.bool),
                         "text": torch.tensor([True, False] * (n // 2) + [True] * (n % 2))}}
    for m, d in FEATURE_DIMS.items():
        if sequences:
            positions = torch.ones(n, 3, dtype=torch.bool)
            positions[0, 2] = False
            batch[m] = (torch.randn(n, 3, d, generator=gen), positions)
        else:
            batch[m] = torch.randn(n, d, generator=gen)
    return batch


# ---------------------------------------------------------------- features in the batch

@pytest.mark.parametrize("name", list(FUSION_METHODS))
def test_encoders_none_read_features_from_the_batch(name):
    fuse = fusion(name)
    model = MultimodalClassifier({"image": None, "text": None}, fuse, C).eval()
    assert len(model.encoders) == 0 and model.modalities == ("image", "text")
    batch = feature_batch(sequences=fuse.uses_sequences)
    logits = model(batch)
    assert logits.shape == (5, C) and torch.isfinite(logits).all()
    expected = model.head(fuse({m: batch[m] for m in FEATURE_DIMS}, batch["present"]))
    torch.testing.assert_close(logits, expected)
    assert model.fused(batch).shape == (5, fuse.out_dim)
    if name == "late":
        assert isinstance(model.head, nn.Identity)
        torch.testing.assert_close(logits, model.fused(batch))


def test_a_batch_without_present_means_everything_present():
    model = MultimodalClassifier({"image": None, "text": None}, fusion("gated"), C).eval()
    batch = feature_batch()
    del batch["present"]
    assert model.modality_mask(batch) is None
    full = {m: torch.ones(5, dtype=torch.bool) for m in FEATURE_DIMS}
    torch.testing.assert_close(model(batch), model({**batch, "present": full}))
    # present may name only some modalities (and others of the batch, which are not the model's)
    partial = {"text": feature_batch()["present"]["text"],
               "video": torch.zeros(5, dtype=torch.bool)}
    mask = model.modality_mask({**batch, "video": torch.zeros(5, 2), "present": partial})
    assert set(mask) == {"image", "text"} and mask["image"].all()
    assert mask["text"].tolist() == partial["text"].tolist()


@pytest.mark.parametrize("training", [False, True])
def test_a_misspelt_key_in_present_is_an_error_naming_it_and_the_known_ones(training):
    model = MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C,
                                 modality_dropout=0.5 if training else 0.0).train(training)
    batch = feature_batch()
    batch["present"] = {"imgae": torch.zeros(5, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"batch\['present'\] names \['imgae'\], which are not "
                                         r"modalities of this model \['image', 'text'\] nor entries "
                                         r"of the batch \['image', 'text'\]"):
        model(batch)


# ---------------------------------------------------------------- real encoders

@pytest.mark.parametrize("name", ["concat", "late", "gated", "attention", "cross", "lowrank"])
def test_real_encoders_on_collated_batches(name):
    enc = encoders()
    fuse = fusion(name)
    model = MultimodalClassifier(enc, fuse, C)
    batch = raw_batch()
    logits = model(batch)
    assert logits.shape == (6, C) and torch.isfinite(logits).all()
    # a sequence fusion gets the sequence and the encoder's pooled vector (both views)
    views = ["sequence", "forward"] if fuse.uses_sequences else ["forward"]
    assert [c[0] for c in enc["image"].calls] == views
    assert [c[0] for c in enc["text"].calls] == views
    # the text encoder got the true lengths; the image has none in the batch
    assert enc["image"].calls[0][1] is None
    assert enc["text"].calls[0][1].tolist() == batch["text_lengths"].tolist()
    logits.sum().backward()
    for m in ("image", "text"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.encoders[m].parameters()), m


@pytest.mark.parametrize("name", ["concat", "attention", "cross"])
def test_padded_tokens_beyond_the_lengths_are_ignored(name):
    model = MultimodalClassifier(encoders(spy=False), fusion(name), C).eval()
    batch = raw_batch()
    logits = model(batch)
    ids, lengths = batch["text"].clone(), batch["text_lengths"]
    padded = torch.arange(ids.shape[1])[None, :] >= lengths[:, None]
    assert padded.any()
    ids[padded] = 5  # a real token id where there is padding
    torch.testing.assert_close(model({**batch, "text": ids}), logits)


def test_an_encoder_without_sequence_view_gives_pooled_features_to_sequence_fusions():
    enc = encoders()
    enc["image"] = PooledSpy(enc["image"].encoder)
    model = MultimodalClassifier(enc, fusion("attention"), C).eval()
    assert model(raw_batch()).shape == (6, C)
    assert [c[0] for c in enc["image"].calls] == ["forward"]
    assert [c[0] for c in enc["text"].calls] == ["sequence", "forward"]


def test_encoders_and_features_mix():
    enc = encoders(spy=False)
    model = MultimodalClassifier({"image": enc["image"], "text": None}, fusion("concat"), C)
    batch = raw_batch()
    batch["text"] = torch.randn(6, 4)
    assert model(batch).shape == (6, C)
    assert list(model.encoders) == ["image"]


def test_works_with_a_dataloader_of_a_multimodal_dataset_and_fit():
    loader = DataLoader(raw_dataset(12), batch_size=4, collate_fn=collate_multimodal)
    model = MultimodalClassifier(encoders(spy=False), fusion("attention"), C,
                                 modality_dropout=0.3, dropout=0.1)
    history = fit(model, loader, loader, epochs=2, lr=1e-2, device="cpu")
    assert len(history.train_loss) == 2 and all(0 <= a <= 1 for a in history.val_accuracy)


def test_works_with_tensor_batches_and_learns():
    gen = torch.Generator().manual_seed(0)
    n = 240
    labels = torch.arange(n) % C
    image = torch.randn(n, 6, generator=gen) * 0.5
    image[torch.arange(n), labels] += 2.0  # the image says the class
    text = torch.randn(n, 4, generator=gen)
    present = {"text": torch.rand(n, generator=gen) > 0.3}
    train = TensorBatches({"image": image, "text": text}, labels, present=present, batch_size=32,
                          shuffle=True, seed=0)
    batch = next(iter(train))
    assert set(batch) == {"image", "text", "label", "present"}
    torch.manual_seed(0)
    model = MultimodalClassifier({"image": None, "text": None}, fusion("gated"), C,
                                 modality_dropout=0.2)
    history = fit(model, train, epochs=15, lr=1e-2, device="cpu")
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    model.eval()
    with torch.no_grad():
        acc = (model({"image": image, "text": text, "present": present}).argmax(1) == labels)
    assert acc.float().mean() > 0.9


# ---------------------------------------------------------------- construction errors

def test_construction_errors():
    with pytest.raises(ValueError, match=r"encoders name \['image'\] but the fusion expects "
                                         r"\['image', 'text'\]"):
        MultimodalClassifier({"image": None}, fusion("concat"), C)
    with pytest.raises(ValueError, match=r"encoders name \['audio', 'image', 'text'\]"):
        MultimodalClassifier({"image": None, "text": None, "audio": None}, fusion("concat"), C)
    with pytest.raises(ValueError, match=r"the image encoder gives 8 features but the fusion "
                                         r"expects 6 for 'image'"):
        MultimodalClassifier({"image": ImageCNN(channels=(4,), out_dim=8), "text": None},
                             fusion("concat"), C)
    with pytest.raises(ValueError, match=r"the text encoder gives 5 features .* expects 4"):
        MultimodalClassifier({"image": None, "text": BagOfWordsEncoder(VOCAB, out_dim=5)},
                             fusion("attention"), C)
    with pytest.raises(TypeError, match=r"fusion must be an mmcourse.fusion.Fusion, got Linear"):
        MultimodalClassifier({"image": None}, nn.Linear(2, 2), C)
    with pytest.raises(ValueError, match=r"LateFusion outputs class scores, so its out_dim \(8\) "
                                         r"must equal num_classes \(3\)"):
        MultimodalClassifier({"image": None, "text": None},
                             make_fusion("late", FEATURE_DIMS, 8), C)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"modality_dropout must be in \[0, 1\), got {bad}"):
            MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C,
                                 modality_dropout=bad)
    with pytest.raises(ValueError, match=r"empty must be 'uniform' or 'error', got 'zero'"):
        MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C, empty="zero")


def test_a_batch_missing_a_modality_raises_a_key_error():
    model = MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C)
    batch = feature_batch()
    del batch["text"]
    with pytest.raises(KeyError, match=r"the batch has no 'text'; it has \['image', 'label', "
                                       r"'present'\]"):
        model(batch)


# ---------------------------------------------------------------- modality dropout

def test_modality_dropout_never_hides_every_modality_and_is_off_in_eval():
    gen = torch.Generator().manual_seed(0)
    n = 2000
    present = {"image": torch.rand(n, generator=gen) > 0.3,
               "text": torch.rand(n, generator=gen) > 0.3}
    batch = {"image": torch.randn(n, 6), "text": torch.randn(n, 4), "label": torch.zeros(n).long(),
             "present": present}
    given = torch.stack([present["image"], present["text"]], 1)
    model = MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C,
                                 modality_dropout=0.5)
    torch.manual_seed(0)
    model.train()
    mask = model.modality_mask(batch)
    kept = torch.stack([mask["image"], mask["text"]], 1)
    assert not (kept & ~given).any()               # never makes a missing modality present
    had_one = given.any(1)
    assert kept[had_one].any(1).all()              # a sample with a modality keeps one
    assert not kept[~had_one].any()                # an empty sample stays empty
    # but modalities were hidden: a sample with both loses one of them when exactly one draw
    # says "hide" (p = 0.5) and when both do (0.25: one, chosen at random, stays), so 3/4 of
    # the time; a sample with one modality keeps it
    both = given.all(1)
    lost_one = (kept[both].sum(1) == 1).float().mean()
    assert 0.68 < lost_one < 0.82
    stayed = kept[both & ~kept.all(1)]
    assert 0.4 < stayed[:, 0].float().mean() < 0.6   # the one that stays is either, evenly
    assert model(batch).shape == (n, C)            # and the fusion never sees an all-masked sample
    # without "present" in the batch, dropout still applies (and still keeps one per sample)
    no_present = {k: v for k, v in batch.items() if k != "present"}
    mask = model.modality_mask(no_present)
    kept = torch.stack([mask["image"], mask["text"]], 1)
    assert kept.any(1).all() and not kept.all()
    # eval mode: exactly what the batch says
    model.eval()
    mask = model.modality_mask(batch)
    assert all(torch.equal(mask[m], present[m]) for m in present)
    assert model.modality_mask(no_present) is None


def test_no_modality_dropout_keeps_the_mask_in_training():
    model = MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C).train()
    batch = feature_batch()
    mask = model.modality_mask(batch)
    assert all(torch.equal(mask[m], batch["present"][m]) for m in FEATURE_DIMS)


# ---------------------------------------------------------------- samples without any modality

@pytest.mark.parametrize("name", list(FUSION_METHODS))
def test_samples_without_modality_get_zero_logits(name):
    fuse = fusion(name)
    model = MultimodalClassifier({"image": None, "text": None}, fuse, C).eval()
    batch = feature_batch(sequences=fuse.uses_sequences)
    batch["present"] = {"image": torch.tensor([True, False, True, False, False]),
                        "text": torch.tensor([True, False, False, True, False])}
    logits = model(batch)
    assert logits.shape == (5, C)
    assert (logits[[1, 4]] == 0).all()
    # the other samples get what they get alone
    rows = [0, 2, 3]
    alone = {m: (v[0][rows], v[1][rows]) if isinstance(v, tuple) else v[rows]
             for m, v in batch.items() if m in FEATURE_DIMS}
    alone["present"] = {m: p[rows] for m, p in batch["present"].items()}
    torch.testing.assert_close(logits[rows], model(alone))
    # a batch in which no sample has a modality
    batch["present"] = {m: torch.zeros(5, dtype=torch.bool) for m in FEATURE_DIMS}
    assert (model(batch) == 0).all()
    # the fusion itself refuses such samples
    with pytest.raises(ValueError, match="every modality is masked"):
        model.fused(batch)


def test_samples_without_modality_can_be_an_error():
    model = MultimodalClassifier({"image": None, "text": None}, fusion("concat"), C, empty="error")
    batch = feature_batch()
    model(batch)
    batch["present"] = {"image": torch.tensor([True, False, True, True, False]),
                        "text": torch.tensor([False, False, True, True, False])}
    with pytest.raises(ValueError, match=r"sample\(s\) \[1, 4\] have no modality at all"):
        model(batch)


def test_empty_samples_still_train():
    """A training batch whose samples include (or are all) empty ones gives a finite loss."""
    model = MultimodalClassifier({"image": None, "text": None}, fusion("cross"), C).train()
    batch = feature_batch(sequences=True)
    batch["present"] = {m: torch.zeros(5, dtype=torch.bool) for m in FEATURE_DIMS}
    batch["present"]["image"][0] = True
    loss = nn.functional.cross_entropy(model(batch), batch["label"])
    loss.backward()
    assert torch.isfinite(loss)
