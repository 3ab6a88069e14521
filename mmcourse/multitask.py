"""A multi-task loss for multimodal classifiers: the main task plus one auxiliary head per modality.

Trained end to end, a multimodal classifier can lean on whichever modality learns fastest and
leave the others under-trained (notebook 05). Auxiliary heads give every encoder a task of its
own: a linear classifier on each modality's features, trained on the same labels. An optional
reconstruction term asks the fused vector to predict each modality's features, which matters when
modality dropout hides some of them:

    L = w_main * CE(z, y)
        + sum_m w_m * mean_{i: m present} CE(z_m[i], y[i])                 (auxiliary heads)
        + w_rec * sum_m mean_{i: m present} ||D_m(h[i]) - sg(x_m[i])||^2 / D_m   (reconstruction)

where z are the fused logits, z_m = A_m(x_m) the auxiliary logits of modality m's features x_m,
h the fused vector, D_m a linear decoder and sg a stop-gradient (the features are the target,
not something to move towards the decoder).

    model = MultiTaskClassifier(classifier, reconstruct=True)   # wraps a MultimodalClassifier
    loss_fn = MultiTaskLoss(model, aux_weights=0.5, reconstruction_weight=0.1)
    fit(model, train_loader, epochs=3, loss_fn=loss_fn)           # mmcourse.training.fit
    model.outputs["aux_logits"]["image"]                        # (B, C) of the last batch
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.classifier import MultimodalClassifier


def _pooled(value: Any) -> torch.Tensor:
    """Features (B, D): as given, the pooled vector of a ``(sequence, positions, pooled)`` triple,
    or the masked mean of a ``(sequence (B, T, D), positions (B, T))`` pair."""
    if isinstance(value, (tuple, list)):
        if len(value) == 3:
            return value[2]
        seq, pos = value
        w = pos.unsqueeze(-1).to(seq.dtype)
        return (seq * w).sum(1) / w.sum(1).clamp(min=1.0)
    return value


def _present_mean(per_sample: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-sample losses (B,) over the samples where ``present`` is True (all if None);
    0 (still part of the graph) when no sample has the modality."""
    if present is None:
        return per_sample.mean()
    present = present.to(per_sample.device).bool()
    if not present.any():
        return per_sample.sum() * 0.0
    return per_sample[present].mean()


def multitask_loss(logits: torch.Tensor, labels: torch.Tensor,
                   aux_logits: Mapping[str, torch.Tensor] | None = None,
                   present: Mapping[str, torch.Tensor] | None = None, *,
                   main_weight: float = 1.0,
                   aux_weights: float | Mapping[str, float] = 0.0,
                   reconstructions: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                   reconstruction_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted multi-task loss and its parts.

    Args:
        logits: fused class scores (B, C); labels: int64 (B,).
        aux_logits: modality -> class scores (B, C) of that modality's auxiliary head.
        present: modality -> bool (B,), True where the sample has the modality; an auxiliary or
            reconstruction term of m averages over those samples only (a missing image has no
            class evidence to learn from). None: every sample has every modality. A name with
            no auxiliary logits or reconstruction (a misspelling) is a ValueError.
        main_weight: weight of the main cross-entropy.
        aux_weights: one weight for every modality, or modality -> weight (missing names: 0).
        reconstructions: modality -> (prediction (B, D_m), target (B, D_m)); the target is
            detached here.
        reconstruction_weight: weight of the summed per-modality mean squared errors.

    Returns:
        ``(loss, parts)``: the scalar total, and each unweighted term, detached:
        ``{"main": ..., "aux_image": ..., ..., "rec_image": ...}``.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    aux_logits = dict(aux_logits or {})
    if isinstance(aux_weights, Mapping):
        unknown = sorted(set(aux_weights) - set(aux_logits))
        if unknown and any(aux_weights[m] for m in unknown):
            raise ValueError(f"aux_weights names {unknown}, which have no auxiliary logits "
                             f"(have {sorted(aux_logits)})")
        weights = {m: float(aux_weights.get(m, 0.0)) for m in aux_logits}
    else:
        weights = {m: float(aux_weights) for m in aux_logits}
    present = dict(present or {})
    known = set(aux_logits) | set(reconstructions or {})
    unknown = sorted(str(m) for m in present if m not in known)
    if unknown:
        raise ValueError(f"present names {unknown}, which have no auxiliary logits or "
                         f"reconstruction (have {sorted(known)}): a misspelt modality?")
    for m, mask in present.items():
        if tuple(torch.as_tensor(mask).shape) != tuple(labels.shape):
            raise ValueError(f"present[{m!r}] must be a bool mask of shape {tuple(labels.shape)} "
                             f"(one per sample), got {tuple(torch.as_tensor(mask).shape)}")
    main = F.cross_entropy(logits.float(), labels)
    total = main_weight * main
    parts = {"main": main.detach()}
    for m, z in aux_logits.items():
        if z.shape != logits.shape:
            raise ValueError(f"aux_logits[{m!r}] has shape {tuple(z.shape)}, the main logits "
                             f"{tuple(logits.shape)}")
        term = _present_mean(F.cross_entropy(z.float(), labels, reduction="none"), present.get(m))
        parts[f"aux_{m}"] = term.detach()
        if weights[m]:
            total = total + weights[m] * term
    for m, (pred, target) in (reconstructions or {}).items():
        if pred.shape != target.shape:
            raise ValueError(f"the reconstruction of {m!r} has shape {tuple(pred.shape)}, its "
                             f"target {tuple(target.shape)}")
        err = (pred.float() - target.detach().float()).pow(2).mean(dim=1)
        term = _present_mean(err, present.get(m))
        parts[f"rec_{m}"] = term.detach()
        if reconstruction_weight:
            total = total + reconstruction_weight * term
    return total, parts


class MultiTaskClassifier(nn.Module):
    """A :class:`~mmcourse.classifier.MultimodalClassifier` that also exposes each modality's
    features to auxiliary heads (and, optionally, reconstruction decoders).

    ``forward(batch) -> logits (B, C)`` exactly as the wrapped classifier computes them (modality
    dropout and samples without any modality included), and it keeps, in ``self.outputs``:

    * ``"features"``: modality -> pooled features (B, D_m) from the encoders;
    * ``"aux_logits"``: modality -> class scores (B, C) of a linear head on those features;
    * ``"present"``: modality -> bool (B,), what the *data* says is present (before modality
      dropout: an auxiliary head learns from every real input);
    * ``"fused"``: the fused vector (B, fusion.out_dim) (zeros for samples with no modality);
    * ``"reconstructions"`` (with ``reconstruct=True``): modality -> (prediction from the fused
      vector, the features) pairs.

    Args:
        classifier: the model to wrap (its encoders, fusion and head are used as they are).
        aux_heads: add a linear auxiliary head per modality.
        reconstruct: add a linear decoder per modality, fused vector -> that modality's features.
    """

    def __init__(self, classifier: MultimodalClassifier, aux_heads: bool = True,
                 reconstruct: bool = False):
        super().__init__()
        if not isinstance(classifier, MultimodalClassifier):
            raise TypeError(f"classifier must be an mmcourse MultimodalClassifier, got "
                            f"{type(classifier).__name__}")
        self.classifier = classifier
        dims, num_classes = classifier.fusion.dims, classifier.num_classes
        self.aux_heads = nn.ModuleDict(
            {m: nn.Linear(d, num_classes) for m, d in dims.items()} if aux_heads else {})
        self.decoders = nn.ModuleDict(
            {m: nn.Linear(classifier.fusion.out_dim, d) for m, d in dims.items()}
            if reconstruct else {})
        self.outputs: dict[str, Any] = {}

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.classifier.modalities

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        clf = self.classifier
        features = clf.features(batch)
        mask = clf.modality_mask(batch)
        first = _pooled(features[self.modalities[0]])
        batch_size, device = first.shape[0], first.device
        given = batch.get("present") or {}
        present = {m: torch.as_tensor(given[m], device=device).bool() if m in given else
                   torch.ones(batch_size, dtype=torch.bool, device=device)
                   for m in self.modalities}
        if mask is None:
            fused = clf.fusion(features)
        else:
            observed = torch.stack(list(mask.values()), dim=1).any(dim=1)
            if observed.all():
                fused = clf.fusion(features, mask)
            else:  # samples with no modality at all: a zero fused vector, uniform class scores
                kept = clf.fusion({m: _rows(x, observed) for m, x in features.items()},
                                  {m: v[observed] for m, v in mask.items()})
                fused = kept.new_zeros(batch_size, kept.shape[1])
                fused[observed] = kept
        logits = clf.head(fused)
        if mask is not None and not observed.all():
            logits = logits.masked_fill(~observed[:, None], 0.0)
        pooled = {m: _pooled(x) for m, x in features.items()}
        self.outputs = {
            "features": pooled, "present": present, "fused": fused,
            "aux_logits": {m: head(pooled[m]) for m, head in self.aux_heads.items()},
        }
        if len(self.decoders):
            self.outputs["reconstructions"] = {m: (dec(fused), pooled[m])
                                               for m, dec in self.decoders.items()}
        return logits


def _rows(x: Any, keep: torch.Tensor) -> Any:
    return x[keep] if isinstance(x, torch.Tensor) else type(x)(t[keep] for t in x)


class MultiTaskLoss:
    """``loss_fn(logits, labels)`` for :func:`mmcourse.training.fit`: the multi-task loss of a
    :class:`MultiTaskClassifier`'s last forward pass (see :func:`multitask_loss`).

    Args:
        model: the MultiTaskClassifier whose ``outputs`` the loss reads.
        main_weight, aux_weights, reconstruction_weight: as in :func:`multitask_loss`.

    ``last_parts`` keeps the unweighted terms of the last call (detached tensors). In evaluation
    mode (``model.eval()``) only the main term counts, so a validation loss compares across
    weightings.
    """

    def __init__(self, model: MultiTaskClassifier, main_weight: float = 1.0,
                 aux_weights: float | Mapping[str, float] = 0.0,
                 reconstruction_weight: float = 0.0):
        if not isinstance(model, MultiTaskClassifier):
            raise TypeError(f"model must be a MultiTaskClassifier, got {type(model).__name__}")
        weights = aux_weights.values() if isinstance(aux_weights, Mapping) else [aux_weights]
        if min([main_weight, reconstruction_weight, *weights]) < 0:
            raise ValueError("loss weights must be >= 0")
        if any(weights) and not len(model.aux_heads):
            raise ValueError("aux_weights > 0 needs a model with auxiliary heads (aux_heads=True)")
        if reconstruction_weight and not len(model.decoders):
            raise ValueError("reconstruction_weight > 0 needs a model built with reconstruct=True")
        self.model, self.main_weight = model, float(main_weight)
        self.aux_weights, self.reconstruction_weight = aux_weights, float(reconstruction_weight)
        self.last_parts: dict[str, torch.Tensor] = {}

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.model.outputs
        if not self.model.training:
            return F.cross_entropy(logits.float(), labels)
        if not out or out["fused"].shape[0] != len(labels):
            raise RuntimeError("MultiTaskLoss reads the outputs of the model's last forward pass; "
                               "call model(batch) on this batch first")
        used = set(out["aux_logits"]) | set(out.get("reconstructions") or {})
        loss, self.last_parts = multitask_loss(
            logits, labels, out["aux_logits"], {m: v for m, v in out["present"].items() if m in used},
            main_weight=self.main_weight,
            aux_weights=self.aux_weights, reconstructions=out.get("reconstructions"),
            reconstruction_weight=self.reconstruction_weight)
        return loss

    def __repr__(self) -> str:
        return (f"MultiTaskLoss(main_weight={self.main_weight}, aux_weights={self.aux_weights}, "
                f"reconstruction_weight={self.reconstruction_weight})")


@torch.no_grad()
def branch_accuracy(model: MultiTaskClassifier, loader, device: str | torch.device | None = None
                    ) -> dict[str, float]:
    """Test accuracy of the fused prediction (``"fused"``, every sample) and of each auxiliary
    head (over the samples where its modality is present)."""
    from mmcourse.device import get_device
    from mmcourse.training import to_device

    device = get_device(device)
    model.to(device).eval()
    right: dict[str, int] = {}
    count: dict[str, int] = {}
    for batch in loader:
        batch = to_device(batch, device)
        labels = batch["label"]
        hit = model(batch).argmax(1) == labels
        right["fused"] = right.get("fused", 0) + int(hit.sum())
        count["fused"] = count.get("fused", 0) + len(labels)
        for m, z in model.outputs["aux_logits"].items():
            seen = model.outputs["present"][m]
            right[m] = right.get(m, 0) + int(((z.argmax(1) == labels) & seen).sum())
            count[m] = count.get(m, 0) + int(seen.sum())
    if not count:
        raise ValueError("loader yielded no batches")
    return {k: right[k] / count[k] for k in right if count[k]}
