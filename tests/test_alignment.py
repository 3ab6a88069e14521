"""mmcourse.alignment: clip_loss, DualEncoder, train_dual_encoder, embed, recall@k, zero-shot."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse import seed_everything
from mmcourse.alignment import (INIT_LOGIT_SCALE, MAX_LOGIT_SCALE, AlignmentHistory, DualEncoder,
                                class_embeddings, clip_loss, cosine_similarity_matrix, embed,
                                positives_from_keys, random_recall_at_k, recall_at_k,
                                train_dual_encoder, zero_shot_classify)
from mmcourse.data.tensors import TensorBatches

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------- clip_loss

def test_clip_loss_hand_checked_value():
    # two orthogonal pairs, scale exp(0) = 1: logits [[1, 0], [0, 1]]; each row's cross-entropy
    # is -log(e / (e + 1)) = log(1 + 1/e), in both directions
    eye = torch.eye(2)
    loss = clip_loss(eye, eye, logit_scale=0.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # a larger scale sharpens the softmax: scale 5 gives log(1 + e^-5)
    assert clip_loss(eye, eye, math.log(5)).item() == pytest.approx(math.log1p(math.exp(-5)), rel=1e-4)


def test_clip_loss_is_the_mean_of_both_directions():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    logits = math.exp(1.5) * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    target = torch.arange(5)
    i2t, t2i = F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)
    assert i2t.item() != pytest.approx(t2i.item(), abs=1e-3)     # the directions differ here
    loss = clip_loss(a, b, torch.tensor(1.5))
    assert loss.item() == pytest.approx(((i2t + t2i) / 2).item(), abs=1e-6)
    assert clip_loss(b, a, 1.5).item() == pytest.approx(loss.item(), abs=1e-6)   # symmetric


def test_clip_loss_normalises_and_clamps_the_scale():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    assert clip_loss(3 * a, 0.5 * b, 2.0).item() == pytest.approx(clip_loss(a, b, 2.0).item(), abs=1e-6)
    at_max = clip_loss(a, b, MAX_LOGIT_SCALE).item()
    assert clip_loss(a, b, 10.0).item() == pytest.approx(at_max, abs=1e-6)
    assert clip_loss(a, b, math.log(50)).item() != pytest.approx(at_max, abs=1e-4)


def test_clip_loss_random_embeddings_about_log_batch():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(512, 64, generator=gen), torch.randn(512, 64, generator=gen)
    assert clip_loss(a, b, 0.0).item() == pytest.approx(math.log(512), rel=0.01)
    assert clip_loss(a[:1], b[:1]).item() == pytest.approx(0.0, abs=1e-6)


def test_clip_loss_gradient_reaches_the_scale():
    scale = torch.tensor(INIT_LOGIT_SCALE, requires_grad=True)
    a = torch.randn(4, 3, requires_grad=True)
    clip_loss(a, torch.randn(4, 3), scale).backward()
    assert scale.grad is not None and a.grad is not None


def test_clip_loss_errors():
    with pytest.raises(ValueError, match="same number of images and texts"):
        clip_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="same D"):
        clip_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        clip_loss(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="float tensor"):
        clip_loss([[1.0]], torch.randn(1, 1))
    with pytest.raises(ValueError, match="single number"):
        clip_loss(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2))


# ------------------------------------------------------------------------------- DualEncoder

class Linear(nn.Module):
    """A course-style encoder: a linear map with an out_dim, accepting lengths."""

    def __init__(self, d_in, out_dim):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(d_in, out_dim), out_dim
        self.seen_lengths = None

    def forward(self, x, lengths=None):
        self.seen_lengths = lengths
        return self.linear(x)


def _model(dim=4):
    seed_everything(0)
    return DualEncoder({"image": Linear(6, 8), "text": Linear(5, 8)}, dim=dim)


def test_dual_encoder_outputs_unit_vectors_and_initial_scale():
    model = _model()
    batch = {"image": torch.randn(3, 6), "text": torch.randn(3, 5), "text_lengths": torch.ones(3)}
    out = model(batch)
    assert set(out) == {"image", "text"} and out["image"].shape == (3, 4)
    for emb in out.values():
        assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.encoders["text"].seen_lengths is batch["text_lengths"]
    assert model.encoders["image"].seen_lengths is None
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert model.scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert isinstance(model.logit_scale, nn.Parameter)
    fixed = DualEncoder({"a": Linear(2, 3), "b": Linear(2, 3)}, dim=2, learn_scale=False)
    assert "logit_scale" not in dict(fixed.named_parameters())
    raw = model.encode("image", batch["image"], normalize=False)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3))


def test_dual_encoder_errors():
    with pytest.raises(ValueError, match="exactly two"):
        DualEncoder({"image": Linear(2, 3)})
    with pytest.raises(TypeError, match="out_dim"):
        DualEncoder({"image": nn.Linear(2, 3), "text": Linear(2, 3)})
    with pytest.raises(ValueError, match="dim"):
        DualEncoder({"image": Linear(2, 3), "text": Linear(2, 3)}, dim=0)
    model = _model()
    with pytest.raises(KeyError, match="'text'"):
        model({"image": torch.randn(2, 6)})
    with pytest.raises(KeyError, match="audio"):
        model.encode("audio", torch.randn(2, 6))


def _paired_data(n=256, seed=0):
    """Two 'modalities' of the same hidden vectors: text = a fixed linear map of image + noise."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, 6, generator=gen)
    mix = torch.randn(6, 5, generator=gen)
    return {"image": hidden, "text": hidden @ mix + 0.05 * torch.randn(n, 5, generator=gen)}


@pytest.mark.parametrize("device", DEVICES)
def test_train_dual_encoder_aligns_pairs(device):
    data = _paired_data()
    model = _model(dim=6)
    before = recall_at_k(embed(model, "image", data["image"]), embed(model, "text", data["text"]),
                         k=1)[1]
    loader = TensorBatches(data, batch_size=64, shuffle=True, seed=0)
    history = train_dual_encoder(model, loader, epochs=15, lr=1e-2, device=device)
    assert isinstance(history, AlignmentHistory) and len(history.loss) == 15
    assert history.loss[-1] < history.loss[0] - 1.0
    assert "15 epochs" in repr(history)
    after = recall_at_k(embed(model, "image", data["image"], device=device),
                        embed(model, "text", data["text"], device=device), k=1)[1]
    assert after > 0.5 > before


def test_train_dual_encoder_clamps_the_scale_and_checks_epochs():
    model = _model()
    loader = TensorBatches(_paired_data(64), batch_size=32)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    train_dual_encoder(model, loader, epochs=1, device="cpu")
    assert model.logit_scale.item() <= MAX_LOGIT_SCALE + 1e-6
    assert model.scale.item() == pytest.approx(100.0, rel=1e-4)
    with pytest.raises(ValueError, match="positive integer"):
        train_dual_encoder(model, loader, epochs=0)


def test_embed_in_batches_matches_one_pass_and_keeps_mode():
    model = _model()
    x = torch.randn(11, 6)
    model.train()
    out = embed(model, "image", x, batch_size=4, device="cpu")
    assert out.shape == (11, 4) and model.training
    assert torch.allclose(out, model.eval().encode("image", x), atol=1e-6)


# ---------------------------------------------------------------------------------- recall@k

def test_recall_perfect_and_hand_checked():
    emb = torch.eye(12)
    assert recall_at_k(emb, emb) == {1: 1.0, 5: 1.0, 10: 1.0}
    # 3 queries; query 0's match ranks 1st, query 1's 2nd, query 2's 3rd
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.9, 0.7, 0.1]])
    q, g = sim, torch.eye(3)   # rows of sim as queries, the identity as gallery: cosines ~ sim
    assert recall_at_k(q, g, k=(1, 2, 3)) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    # the other direction swaps queries and gallery: different numbers
    assert recall_at_k(g, q, k=1)[1] != pytest.approx(1 / 3)


def test_recall_with_duplicate_positives():
    # gallery items 0 and 1 share a caption: for query 0 either counts as correct
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[0.0, 1.0], [1.0, 0.1], [0.7, 0.7]])
    pos = positives_from_keys(["red star", "blue ring"], ["red star", "red star", "blue ring"])
    assert pos.tolist() == [[True, True, False], [False, False, True]]
    assert recall_at_k(q, g, k=(1, 2), positives=pos) == {1: 0.5, 2: 1.0}


def test_recall_on_random_embeddings_matches_the_random_baseline():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 32, generator=gen), torch.randn(2000, 32, generator=gen)
    got = recall_at_k(a, b, k=(1, 10, 100))
    want = random_recall_at_k(torch.eye(2000, dtype=torch.bool), k=(1, 10, 100))
    assert want == pytest.approx({1: 1 / 2000, 10: 10 / 2000, 100: 100 / 2000})
    assert got[100] == pytest.approx(want[100], abs=0.015)
    assert got[1] < 0.005


def test_random_recall_formula_against_simulation():
    gen = torch.Generator().manual_seed(3)
    pos = torch.rand(40, 30, generator=gen) < 0.1
    pos[:, 0] |= ~pos.any(1)                          # every query has a positive
    want = random_recall_at_k(pos, k=(1, 5))
    m = pos.sum(1).float()
    assert want[1] == pytest.approx((m / 30).mean().item())
    hits = torch.zeros(2)
    for _ in range(3000):
        top = torch.rand(40, 30, generator=gen).argsort(1)[:, :5]
        hit = pos.gather(1, top)
        hits += torch.tensor([hit[:, :1].any(1).float().mean(), hit.any(1).float().mean()])
    assert (hits / 3000).tolist() == pytest.approx([want[1], want[5]], abs=0.01)


def test_recall_errors():
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same number of rows"):
        recall_at_k(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match="larger than the gallery"):
        recall_at_k(a, a, k=(1, 5))
    with pytest.raises(ValueError, match="same D"):
        recall_at_k(a, torch.randn(4, 2))
    with pytest.raises(ValueError, match="bool"):
        recall_at_k(a, a, k=1, positives=torch.eye(4))
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(a, a, k=1, positives=torch.eye(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no positive"):
        recall_at_k(a, a, k=1, positives=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(a, a, k=0)


# ------------------------------------------------------------------------------- zero-shot

def test_zero_shot_classify_and_prompt_ensembles():
    classes = torch.eye(3, 4)
    images = torch.tensor([[0.1, 2.0, 0.0, 0.0], [3.0, 0.0, 0.2, 0.0], [0.0, 0.1, 0.5, 0.3]])
    assert zero_shot_classify(images, classes).tolist() == [1, 0, 2]
    # two prompts per class: the mean of the unit vectors, renormalised
    prompts = torch.stack([classes, 5 * classes + 0.01], dim=1)          # (3, 2, 4)
    assert class_embeddings(prompts).shape == (3, 4)
    assert torch.allclose(class_embeddings(prompts).norm(dim=1), torch.ones(3))
    assert zero_shot_classify(images, prompts).tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match=r"\(C, D\) or \(C, P, D\)"):
        zero_shot_classify(images, torch.randn(4))


def test_cosine_similarity_matrix():
    a = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    sim = cosine_similarity_matrix(a, a)
    assert torch.allclose(sim, torch.tensor([[1.0, 2 ** -0.5], [2 ** -0.5, 1.0]]), atol=1e-6)
