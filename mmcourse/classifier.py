"""The course's classifiers: ``batch dict -> logits (B, num_classes)``.

:class:`UnimodalClassifier` is one encoder plus a linear head (the baselines of Part 1);
:class:`MultimodalClassifier` is encoders + fusion + head, the model of Parts 2 to 4:

    model = MultimodalClassifier(
        encoders={"image": ImageCNN(out_dim=64), "audio": AudioCNN(out_dim=64), "text": None},
        fusion=GatedFusion({"image": 64, "audio": 64, "text": 32}, out_dim=64),
        num_classes=8)
    logits = model(batch)            # batch: a dict as made by the course's collate or TensorBatches

For each modality of the fusion, the classifier reads ``batch[m]`` and passes it through
``encoders[m]`` (with ``lengths=batch[f"{m}_lengths"]`` when the batch has them); an encoder of
``None`` means the batch already holds features. Fusions that keep sequences get the encoder's
``sequence`` view with its pooled vector: ``(tokens, positions, encoder(x))``. ``batch["present"][m]`` (if there) marks missing modalities for the fusion.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from mmcourse.fusion import Fusion


class UnimodalClassifier(nn.Module):
    """An encoder of one modality plus a linear head: ``batch dict -> logits``.

    Passes ``batch[modality]`` to the encoder, and ``lengths=batch[f"{modality}_lengths"]`` too
    when the batch has them (padded audio or token ids).
    """

    def __init__(self, encoder: nn.Module, modality: str, num_classes: int):
        super().__init__()
        if not hasattr(encoder, "out_dim"):
            raise TypeError(f"the encoder {type(encoder).__name__} has no out_dim attribute; "
                            f"course encoders say how many features they return")
        self.encoder, self.modality = encoder, modality
        self.head = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.modality not in batch:
            raise KeyError(f"this classifier reads modality {self.modality!r} but the batch has "
                           f"{sorted(k for k in batch if k not in ('label', 'present'))}")
        lengths = batch.get(f"{self.modality}_lengths")
        features = (self.encoder(batch[self.modality], lengths=lengths) if lengths is not None
                    else self.encoder(batch[self.modality]))
        return self.head(features)


class MultimodalClassifier(nn.Module):
    """``batch dict -> logits (B, num_classes)``: per-modality encoders, a fusion, a linear head.

    Args:
        encoders: modality -> encoder (an ``nn.Module`` with ``out_dim``, see
            :mod:`mmcourse.encoders`) or None when the batch holds features already. Must name
            exactly the fusion's modalities.
        fusion: any :class:`mmcourse.fusion.Fusion`.
        num_classes: size of the output. Late fusion already outputs class scores, so its
            ``out_dim`` must equal ``num_classes`` and no head is added.
        modality_dropout: in training mode, hide each present modality of each sample with this
            probability, so the model cannot lean on one; where every present modality of a
            sample is drawn to go, one of them (chosen at random) stays.
        dropout: dropout before the head.
        empty: what to do with a sample that has no modality at all (the course data has a
            few): ``"uniform"`` gives it all-zero class scores (a uniform guess; it still counts
            in accuracy), ``"error"`` raises a ValueError.
    """

    def __init__(self, encoders: Mapping[str, nn.Module | None], fusion: Fusion,
                 num_classes: int, modality_dropout: float = 0.0, dropout: float = 0.0,
                 empty: str = "uniform"):
        super().__init__()
        if not isinstance(fusion, Fusion):
            raise TypeError(f"fusion must be an mmcourse.fusion.Fusion, got {type(fusion).__name__}")
        if set(encoders) != set(fusion.modalities):
            raise ValueError(f"encoders name {sorted(encoders)} but the fusion expects "
                             f"{sorted(fusion.modalities)}: give one encoder (or None) per modality")
        for m, enc in encoders.items():
            size = getattr(enc, "out_dim", None)
            if enc is not None and size is not None and size != fusion.dims[m]:
                raise ValueError(f"the {m} encoder gives {size} features but the fusion expects "
                                 f"{fusion.dims[m]} for {m!r}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        if empty not in ("uniform", "error"):
            raise ValueError(f"empty must be 'uniform' or 'error', got {empty!r}")
        self.empty = empty
        if fusion.outputs_logits and fusion.out_dim != num_classes:
            raise ValueError(f"{type(fusion).__name__} outputs class scores, so its out_dim "
                             f"({fusion.out_dim}) must equal num_classes ({num_classes})")
        self.encoders = nn.ModuleDict({m: e for m, e in encoders.items() if e is not None})
        self.fusion = fusion
        self.modalities = fusion.modalities
        self.modality_dropout = modality_dropout
        self.head = nn.Identity() if fusion.outputs_logits else nn.Sequential(
            nn.Dropout(dropout), nn.Linear(fusion.out_dim, num_classes))
        self.num_classes = num_classes

    def features(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Each modality's features: (B, D), or ((B, T, D), positions, (B, D)) for sequence
        fusions (the sequence, its real positions and the encoder's pooled vector)."""
        out = {}
        for m in self.modalities:
            if m not in batch:
                raise KeyError(f"the batch has no {m!r}; it has {sorted(batch)}")
            x = batch[m]
            if m in self.encoders:
                enc = self.encoders[m]
                kwargs = {}
                if batch.get(f"{m}_lengths") is not None:
                    kwargs["lengths"] = batch[f"{m}_lengths"]
                if self.fusion.uses_sequences and hasattr(enc, "sequence"):
                    # the sequence, its real positions, and the encoder's own pooled vector
                    x = (*enc.sequence(x, **kwargs), enc(x, **kwargs))
                else:
                    x = enc(x, **kwargs)
            out[m] = x
        return out

    def modality_mask(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        """``batch["present"]`` restricted to the fusion's modalities, with modality dropout
        applied in training mode; None when the batch says nothing about missing modalities.

        A key of ``batch["present"]`` that is neither one of the model's modalities nor another
        entry of the batch (a misspelt ``"imgae"``) raises a ValueError naming it and the known
        ones, instead of leaving that modality marked present."""
        given = batch.get("present")
        if given:
            known = set(self.modalities) | (set(batch) - {"label", "present"})
            unknown = sorted(str(k) for k in given if k not in known)
            if unknown:
                raise ValueError(f"batch['present'] names {unknown}, which are not modalities of "
                                 f"this model {list(self.modalities)} nor entries of the batch "
                                 f"{sorted(set(batch) - {'label', 'present'})}; check the spelling")
        if not given and not (self.training and self.modality_dropout > 0):
            return None
        batch_size = len(batch["label"]) if "label" in batch else None
        mask = {}
        for m in self.modalities:
            if given and m in given:
                mask[m] = torch.as_tensor(given[m]).bool()
                batch_size = len(mask[m])
        if batch_size is None:
            first = batch[self.modalities[0]]
            batch_size = len(first[0] if isinstance(first, (tuple, list)) else first)
        device = next(self.parameters()).device
        present = torch.stack([mask.get(m, torch.ones(batch_size, dtype=torch.bool, device=device))
                               .to(device) for m in self.modalities], dim=1)
        if self.training and self.modality_dropout > 0:
            keep = present & (torch.rand(present.shape, device=device) >= self.modality_dropout)
            # where every present modality was drawn to go, one of them (at random) stays
            one = torch.rand(present.shape, device=device).masked_fill(~present, -1.0).argmax(1)
            rescue = torch.zeros_like(present).scatter_(1, one[:, None], True) & present
            emptied = ~keep.any(dim=1, keepdim=True)
            present = torch.where(emptied, rescue, keep)
        return {m: present[:, j] for j, m in enumerate(self.modalities)}

    def fused(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The fused vector (B, fusion.out_dim), before the head (every sample must have at
        least one modality)."""
        return self.fusion(self.features(batch), self.modality_mask(batch))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        features, mask = self.features(batch), self.modality_mask(batch)
        if mask is not None:
            observed = torch.stack(list(mask.values()), dim=1).any(dim=1)
            if not observed.all():
                if self.empty == "error":
                    raise ValueError(f"sample(s) {(~observed).nonzero().flatten()[:10].tolist()} "
                                     f"have no modality at all; nothing to classify")
                # nothing observed: uniform class scores (a guess), computed rows only
                logits = self.head(self.fusion(_rows(features, observed),
                                               {m: v[observed] for m, v in mask.items()}))
                out = logits.new_zeros(len(observed), logits.shape[1])
                out[observed] = logits
                return out
        return self.head(self.fusion(features, mask))


def _rows(features: Mapping[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    return {m: x[keep] if isinstance(x, torch.Tensor) else type(x)(t[keep] for t in x)
            for m, x in features.items()}
