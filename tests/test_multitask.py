"""mmcourse.multitask: the weighted multi-task loss and the classifier wrapper that feeds it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.tensors import TensorBatches
from mmcourse.fusion import ConcatFusion, make_fusion
from mmcourse.multitask import MultiTaskClassifier, MultiTaskLoss, branch_accuracy, multitask_loss
from mmcourse.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")

C = 4
DIMS = {"image": 5, "text": 3}
RAW = {"image": 7, "text": 6}


class TinyEncoder(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(d_in, d_out), d_out

    def forward(self, x):
        return torch.relu(self.linear(x))


def classifier(modality_dropout=0.0, fusion="concat"):
    torch.manual_seed(0)
    encoders = {m: TinyEncoder(RAW[m], d) for m, d in DIMS.items()}
    out = C if fusion == "late" else 8
    return MultimodalClassifier(encoders, make_fusion(fusion, DIMS, out), C,
                                modality_dropout=modality_dropout)


def batch(n=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    present = {"image": torch.rand(n, generator=gen) > 0.3, "text": torch.rand(n, generator=gen) > 0.3}
    present["image"][0] = present["text"][0] = False          # a sample with nothing at all
    present["image"][1] = present["text"][1] = True
    return {m: torch.randn(n, d, generator=gen) for m, d in RAW.items()} | {
        "label": torch.randint(0, C, (n,), generator=gen), "present": present}


# ------------------------------------------------------------------------ the loss

def test_main_only_is_cross_entropy():
    logits, labels = torch.randn(6, C), torch.randint(0, C, (6,))
    loss, parts = multitask_loss(logits, labels)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))
    assert set(parts) == {"main"}


def test_weights_and_present_only_averaging():
    gen = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(6, C, generator=gen), torch.randint(0, C, (6,), generator=gen)
    aux = {"image": torch.randn(6, C, generator=gen), "text": torch.randn(6, C, generator=gen)}
    present = {"image": torch.tensor([1, 1, 0, 1, 0, 1]).bool(), "text": torch.ones(6).bool()}
    loss, parts = multitask_loss(logits, labels, aux, present, main_weight=0.5,
                                 aux_weights={"image": 2.0, "text": 0.25})
    img = F.cross_entropy(aux["image"][present["image"]], labels[present["image"]])
    txt = F.cross_entropy(aux["text"], labels)
    want = 0.5 * F.cross_entropy(logits, labels) + 2.0 * img + 0.25 * txt
    assert torch.allclose(loss, want)
    assert torch.allclose(parts["aux_image"], img) and torch.allclose(parts["aux_text"], txt)
    # one number for all modalities; a modality absent from a weight dict gets weight 0
    same, _ = multitask_loss(logits, labels, aux, present, aux_weights=1.0)
    assert torch.allclose(same, F.cross_entropy(logits, labels) + img + txt)
    only, _ = multitask_loss(logits, labels, aux, present, aux_weights={"image": 1.0})
    assert torch.allclose(only, F.cross_entropy(logits, labels) + img)


def test_present_keys_and_shapes_are_checked():
    logits, labels = torch.randn(4, C), torch.tensor([0, 1, 2, 0])
    aux = {"image": torch.randn(4, C), "text": torch.randn(4, C)}
    with pytest.raises(ValueError, match=r"present names \['imgae'\].*misspelt"):
        multitask_loss(logits, labels, aux, {"imgae": torch.ones(4).bool()}, aux_weights=1.0)
    with pytest.raises(ValueError, match=r"present\['text'\] must be a bool mask of shape \(4,\)"):
        multitask_loss(logits, labels, aux, {"text": torch.ones(3).bool()}, aux_weights=1.0)


def test_aux_term_of_an_absent_modality_is_zero_not_nan():
    logits, labels = torch.randn(3, C, requires_grad=True), torch.tensor([0, 1, 2])
    aux = {"image": torch.randn(3, C, requires_grad=True)}
    loss, parts = multitask_loss(logits, labels, aux, {"image": torch.zeros(3).bool()},
                                 aux_weights=1.0)
    assert torch.isfinite(loss) and float(parts["aux_image"]) == 0.0
    loss.backward()
    assert torch.equal(aux["image"].grad, torch.zeros(3, C))


def test_reconstruction_term_detaches_the_target():
    pred = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    present = {"image": torch.tensor([True, True, False, True])}
    loss, parts = multitask_loss(torch.zeros(4, C), torch.zeros(4).long(), None, present,
                                 reconstructions={"image": (pred, target)},
                                 reconstruction_weight=0.5)
    want = ((pred - target) ** 2).mean(1)[present["image"]].mean()
    assert torch.allclose(parts["rec_image"], want.detach())
    assert torch.allclose(loss, F.cross_entropy(torch.zeros(4, C), torch.zeros(4).long()) + 0.5 * want)
    loss.backward()
    assert pred.grad is not None and target.grad is None


def test_loss_errors():
    with pytest.raises(ValueError, match="labels"):
        multitask_loss(torch.randn(3, C), torch.zeros(4).long())
    with pytest.raises(ValueError, match="aux_logits\\['image'\\]"):
        multitask_loss(torch.randn(3, C), torch.zeros(3).long(), {"image": torch.randn(3, C + 1)})
    with pytest.raises(ValueError, match="no auxiliary logits"):
        multitask_loss(torch.randn(3, C), torch.zeros(3).long(), {"image": torch.randn(3, C)},
                       aux_weights={"audio": 1.0})


# ------------------------------------------------------------------------ the wrapper

@pytest.mark.parametrize("fusion", ["concat", "gated", "late", "attention"])
def test_wrapper_gives_the_classifiers_logits(fusion):
    clf = classifier(modality_dropout=0.4, fusion=fusion)
    wrapped = MultiTaskClassifier(clf, reconstruct=True)
    b = batch()
    for mode in ("train", "eval"):
        getattr(clf, mode)()
        getattr(wrapped, mode)()
        torch.manual_seed(3)
        want = clf(b)
        torch.manual_seed(3)
        got = wrapped(b)
        assert torch.allclose(got, want, atol=1e-6), mode
    assert torch.equal(got[0], torch.zeros(C))                # the sample with no modality
    out = wrapped.outputs
    assert {m: tuple(x.shape) for m, x in out["features"].items()} == {"image": (10, 5), "text": (10, 3)}
    assert {m: tuple(z.shape) for m, z in out["aux_logits"].items()} == {"image": (10, C), "text": (10, C)}
    assert torch.equal(out["present"]["image"], b["present"]["image"])
    pred, target = out["reconstructions"]["text"]
    assert pred.shape == target.shape == (10, 3)


def test_wrapper_without_present_and_without_heads():
    wrapped = MultiTaskClassifier(classifier(), aux_heads=False)
    b = {k: v for k, v in batch().items() if k != "present"}
    logits = wrapped(b)
    assert logits.shape == (10, C) and wrapped.outputs["aux_logits"] == {}
    assert all(p.all() for p in wrapped.outputs["present"].values())
    with pytest.raises(TypeError, match="MultimodalClassifier"):
        MultiTaskClassifier(nn.Linear(3, 3))


def test_aux_loss_alone_trains_the_encoders_not_the_fusion():
    wrapped = MultiTaskClassifier(classifier()).train()
    loss_fn = MultiTaskLoss(wrapped, main_weight=0.0, aux_weights=1.0)
    b = batch()
    loss_fn(wrapped(b), b["label"]).backward()
    clf = wrapped.classifier
    assert clf.encoders["image"].linear.weight.grad.abs().sum() > 0
    assert clf.fusion.proj.weight.grad is None or clf.fusion.proj.weight.grad.abs().sum() == 0
    assert set(loss_fn.last_parts) == {"main", "aux_image", "aux_text"}


def test_loss_fn_checks_and_eval_mode():
    wrapped = MultiTaskClassifier(classifier(), aux_heads=False)
    with pytest.raises(ValueError, match="auxiliary heads"):
        MultiTaskLoss(wrapped, aux_weights=1.0)
    with pytest.raises(ValueError, match="reconstruct=True"):
        MultiTaskLoss(wrapped, reconstruction_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        MultiTaskLoss(wrapped, main_weight=-1.0)
    with pytest.raises(TypeError, match="MultiTaskClassifier"):
        MultiTaskLoss(classifier())
    loss_fn = MultiTaskLoss(wrapped)
    with pytest.raises(RuntimeError, match="forward pass"):
        loss_fn(torch.randn(3, C), torch.zeros(3).long())
    b = batch()
    wrapped.eval()
    logits = wrapped(b)
    assert torch.allclose(loss_fn(logits, b["label"]), F.cross_entropy(logits, b["label"]))


def test_fit_with_the_multitask_loss_and_branch_accuracy():
    gen = torch.Generator().manual_seed(0)
    n = 64
    labels = torch.randint(0, C, (n,), generator=gen)
    # each modality carries the label: 3 * one_hot(label) in its first C inputs, plus noise
    data = {m: torch.randn(n, d, generator=gen) + 3 * F.pad(F.one_hot(labels, C).float(), (0, d - C))
            for m, d in RAW.items()}
    present = {"image": torch.rand(n, generator=gen) > 0.2, "text": torch.ones(n).bool()}
    loader = TensorBatches(data, labels, present=present, batch_size=16, shuffle=True)
    torch.manual_seed(0)
    model = MultiTaskClassifier(MultimodalClassifier(
        {m: TinyEncoder(RAW[m], d) for m, d in DIMS.items()}, ConcatFusion(DIMS, 8), C,
        modality_dropout=0.3), reconstruct=True)
    loss_fn = MultiTaskLoss(model, aux_weights={"image": 0.5, "text": 0.5},
                            reconstruction_weight=0.1)
    history = fit(model, loader, epochs=15, lr=1e-2, loss_fn=loss_fn)
    assert history.train_loss[-1] < history.train_loss[0]
    acc = branch_accuracy(model, TensorBatches(data, labels, present=present, batch_size=32))
    assert set(acc) == {"fused", "image", "text"}
    assert acc["fused"] > 0.8 and acc["text"] > 0.8
