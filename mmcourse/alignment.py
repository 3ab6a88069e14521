"""Contrastive alignment, CLIP-style: two encoders trained to put matching pairs close together.

A *dual encoder* embeds each modality on its own (an image CNN, a text encoder) and projects both
into one shared space of unit vectors, where the cosine similarity of an image and a text says
how well they match. It is trained with the symmetric InfoNCE loss of CLIP (Radford et al. 2021):
in a batch of B pairs, every image must pick out its own text among the B texts (the other B - 1
are the *in-batch negatives*), and every text its own image.

    model = DualEncoder({"image": ImageCNN(out_dim=64), "text": BagOfWordsEncoder(V, 64)}, dim=32)
    history = train_dual_encoder(model, loader, epochs=10)          # batches {"image", "text", ...}
    img = embed(model, "image", images); txt = embed(model, "text", ids, lengths)
    recall_at_k(img, txt, k=(1, 5, 10), positives=...)               # cross-modal retrieval
    zero_shot_classify(img, class_text_emb)                          # classes named by text prompts

Conventions: embeddings are float (N, D); similarities are cosines (the functions normalise their
inputs); ``logit_scale`` is the *logarithm* of the factor that multiplies the cosines (CLIP
initialises it to log(1 / 0.07), i.e. a temperature of 0.07, and never lets the factor exceed 100).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.checks import check_int
from mmcourse.device import get_device
from mmcourse.progress import progress
from mmcourse.training import to_device

#: CLIP's initial logit scale: log(1 / 0.07), a softmax temperature of 0.07 (factor about 14.3).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: The largest logit scale: log(100); cosines are never multiplied by more than 100.
MAX_LOGIT_SCALE = math.log(100)


def _check_embeddings(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a float tensor (N, D), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D): one embedding per row, got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows (shape {tuple(x.shape)})")
    return x


def _check_pair(a: Any, b: Any, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _check_embeddings(a, names[0]), _check_embeddings(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must live in the same space (same D), got "
                         f"shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
              logit_scale: torch.Tensor | float = INIT_LOGIT_SCALE) -> torch.Tensor:
    """The symmetric InfoNCE loss of CLIP, with in-batch negatives.

    Row i of ``image_emb`` and row i of ``text_emb`` are a matching pair; every other row of the
    batch is a negative. With unit vectors u_i, v_j and s = exp(min(logit_scale, log 100)):

        logits = s * U V^T                      (B, B) scaled cosine similarities
        loss   = (CE(logits, 0..B-1) + CE(logits^T, 0..B-1)) / 2

    the first cross-entropy asks each image to find its text among the B texts, the second each
    text its image.

    Args:
        image_emb, text_emb: float (B, D), the two modalities' embeddings of the same B pairs (any
            two modalities work; the names follow CLIP). They are L2-normalised here, so unit
            vectors stay as they are.
        logit_scale: the log of the scale s (a float or a 0-d tensor, typically the model's
            learnable parameter); clamped at log(100) as in CLIP.

    Returns: a 0-d tensor. With B = 1 the loss is 0 (nothing to tell apart); its value at
    random embeddings is about log(B).
    """
    image_emb, text_emb = _check_pair(image_emb, text_emb, ("image_emb", "text_emb"))
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(f"clip_loss needs the same number of images and texts (row i of each is "
                         f"one pair), got {image_emb.shape[0]} and {text_emb.shape[0]}")
    logit_scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=image_emb.device)
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a single number, got shape {tuple(logit_scale.shape)}")
    scale = logit_scale.reshape(()).clamp(max=MAX_LOGIT_SCALE).exp()
    logits = scale * F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class DualEncoder(nn.Module):
    """Two encoders, each followed by a linear projection into one shared space of unit vectors.

    Args:
        encoders: exactly two ``modality name -> encoder`` entries, e.g. ``{"image": ImageCNN(),
            "text": BagOfWordsEncoder(V)}``. An encoder maps ``x`` (and ``lengths=`` when the
            batch has ``"<modality>_lengths"``) to (B, encoder.out_dim), like every course encoder.
        dim: size D of the shared embedding space.
        logit_scale: initial value of the learnable log scale (CLIP: log(1 / 0.07)).
        learn_scale: False keeps the scale fixed (a buffer).

    ``model(batch)`` returns ``{modality: (B, D) unit vectors}`` for both modalities;
    ``model.encode(modality, x, lengths)`` embeds one; ``model.scale`` is exp(clamped log scale).
    """

    def __init__(self, encoders: Mapping[str, nn.Module], dim: int = 32,
                 logit_scale: float = INIT_LOGIT_SCALE, learn_scale: bool = True):
        super().__init__()
        if not isinstance(encoders, Mapping) or len(encoders) != 2:
            got = list(encoders) if isinstance(encoders, Mapping) else type(encoders).__name__
            raise ValueError(f"DualEncoder needs a dict of exactly two modality -> encoder "
                             f"entries, got {got}")
        check_int(dim, "dim")
        for m, enc in encoders.items():
            if not hasattr(enc, "out_dim"):
                raise TypeError(f"the {m} encoder {type(enc).__name__} has no out_dim attribute; "
                                f"course encoders say how many features they return")
        self.modalities = tuple(encoders)
        self.dim = dim
        self.encoders = nn.ModuleDict(dict(encoders))
        self.projections = nn.ModuleDict({m: nn.Linear(enc.out_dim, dim, bias=False)
                                          for m, enc in encoders.items()})
        value = torch.tensor(float(logit_scale))
        if learn_scale:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)

    @property
    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100: the factor that multiplies the cosines (0-d, no
        gradient; the loss uses ``logit_scale`` itself)."""
        return self.logit_scale.detach().clamp(max=MAX_LOGIT_SCALE).exp()

    def encode(self, modality: str, x: Any, lengths: torch.Tensor | None = None,
               normalize: bool = True) -> torch.Tensor:
        """Embeddings (B, D) of one modality's input (unit vectors unless ``normalize=False``)."""
        if modality not in self.encoders:
            raise KeyError(f"this model embeds {list(self.modalities)}, not {modality!r}")
        encoder = self.encoders[modality]
        features = encoder(x) if lengths is None else encoder(x, lengths=lengths)
        z = self.projections[modality](features)
        return F.normalize(z, dim=-1) if normalize else z

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(f"the batch has no {missing[0]!r} entry; this model reads "
                           f"{list(self.modalities)}, the batch has {sorted(batch)}")
        return {m: self.encode(m, batch[m], batch.get(f"{m}_lengths")) for m in self.modalities}


@dataclass
class AlignmentHistory:
    """Per epoch: the mean training loss and the logit scale's factor exp(logit_scale) at its end."""

    loss: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)

    def __repr__(self) -> str:
        if not self.loss:
            return "AlignmentHistory(not trained)"
        return (f"AlignmentHistory({len(self.loss)} epochs, loss={self.loss[-1]:.3f}, "
                f"scale={self.scale[-1]:.1f})")


def train_dual_encoder(model: DualEncoder, loader: Iterable[Mapping[str, Any]], *, epochs: int,
                       lr: float = 2e-3, weight_decay: float = 0.0,
                       loss_fn: Callable[..., torch.Tensor] = clip_loss,
                       optimizer: torch.optim.Optimizer | None = None,
                       device: str | torch.device | None = None,
                       desc: str = "alignment") -> AlignmentHistory:
    """Train ``model`` with ``loss_fn(emb_a, emb_b, model.logit_scale)`` (default :func:`clip_loss`).

    ``loader`` yields batch dicts holding both of the model's modalities (labels are not needed and
    not used: the pairing is the supervision). AdamW with ``lr``/``weight_decay`` unless an
    ``optimizer`` is given. After each step the log scale is clamped to [0, log 100], as OpenCLIP
    does, so the parameter itself stays in range. Returns an :class:`AlignmentHistory`.
    """
    check_int(epochs, "epochs")
    device = get_device(device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    a, b = model.modalities
    history = AlignmentHistory()
    for epoch in progress(range(epochs), desc=desc):
        model.train()
        total, count = 0.0, 0
        for batch in loader:
            batch = to_device(batch, device)
            emb = model(batch)
            loss = loss_fn(emb[a], emb[b], model.logit_scale)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch}; lower "
                                         f"the learning rate (now {lr}) or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
            total += loss.item() * len(emb[a])
            count += len(emb[a])
        if count == 0:
            raise ValueError("loader yielded no batches")
        history.loss.append(total / count)
        history.scale.append(model.scale.item())
    return history


@torch.no_grad()
def embed(model: DualEncoder, modality: str, x: torch.Tensor, lengths: torch.Tensor | None = None,
          batch_size: int = 500, device: str | torch.device | None = None) -> torch.Tensor:
    """Unit-vector embeddings (N, D) float32 on the CPU of ``x`` (N, ...) in eval mode, in batches.

    The model is moved to ``device`` (default: :func:`mmcourse.get_device`) and stays there; its
    train/eval mode is restored afterwards."""
    device = get_device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        out = [model.encode(modality, x[i:i + batch_size].to(device),
                            None if lengths is None else lengths[i:i + batch_size].to(device)
                            ).float().cpu()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if not out:
        raise ValueError(f"nothing to embed: x has shape {tuple(x.shape)}")
    return torch.cat(out)


def cosine_similarity_matrix(query_emb: torch.Tensor, gallery_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarities (Q, G) between every query row and every gallery row."""
    query_emb, gallery_emb = _check_pair(query_emb, gallery_emb, ("query_emb", "gallery_emb"))
    return F.normalize(query_emb.float(), dim=-1) @ F.normalize(gallery_emb.float(), dim=-1).T


def positives_from_keys(query_keys: Sequence[Any], gallery_keys: Sequence[Any]) -> torch.Tensor:
    """bool (Q, G): True where query i and gallery item j have the same key (a caption, a label).

    With duplicated captions this is what "the right answer" means: any gallery item with the
    query's caption counts as correct."""
    index: dict[Any, int] = {}
    q = torch.tensor([index.setdefault(k, len(index)) for k in query_keys], dtype=torch.long)
    g = torch.tensor([index.setdefault(k, len(index)) for k in gallery_keys], dtype=torch.long)
    return q[:, None] == g[None, :]


def _check_positives(positives: Any, q: int, g: int | None = None) -> torch.Tensor:
    if positives is None:
        if g is not None and q != g:
            raise ValueError(f"without positives, query i matches gallery item i, so both need "
                             f"the same number of rows; got {q} queries and {g} gallery items "
                             f"(pass positives=bool (Q, G) for anything else)")
        return torch.eye(q, dtype=torch.bool)
    positives = torch.as_tensor(positives)
    if positives.dtype != torch.bool:
        raise ValueError(f"positives must be a bool tensor (Q, G), got dtype {positives.dtype}")
    if positives.dim() != 2 or positives.shape[0] != q or (g is not None and positives.shape[1] != g):
        want = f"({q}, {g})" if g is not None else f"({q}, G)"
        raise ValueError(f"positives must have shape {want} (queries, gallery items), got "
                         f"{tuple(positives.shape)}")
    empty = ~positives.any(1)
    if empty.any():
        raise ValueError(f"{int(empty.sum())} queries have no positive in the gallery (e.g. "
                         f"query {int(empty.nonzero()[0])}); recall is undefined for them")
    return positives


def _check_ks(k: int | Sequence[int], g: int) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int) else tuple(k)
    for kk in ks:
        check_int(kk, "every k")
        if kk > g:
            raise ValueError(f"k={kk} is larger than the gallery ({g} items)")
    return ks


def recall_at_k(query_emb: torch.Tensor, gallery_emb: torch.Tensor,
                k: int | Sequence[int] = (1, 5, 10),
                positives: torch.Tensor | None = None) -> dict[int, float]:
    """Recall@k of retrieval: the share of queries with at least one positive among their k most
    similar gallery items (by cosine similarity).

    Args:
        query_emb: float (Q, D), e.g. images for image-to-text retrieval.
        gallery_emb: float (G, D), e.g. texts; swap the two for the other direction.
        k: one k or several.
        positives: bool (Q, G), which gallery items count as correct for each query (see
            :func:`positives_from_keys`); None: query i matches gallery item i only (Q == G).

    Returns: ``{k: recall}`` with recall in [0, 1]. Ties are ranked by gallery index (torch.topk).
    """
    sim = cosine_similarity_matrix(query_emb, gallery_emb)
    positives = _check_positives(positives, *sim.shape).to(sim.device)
    ks = _check_ks(k, sim.shape[1])
    top = sim.topk(max(ks), dim=1).indices                        # (Q, max k), best first
    hit = positives.gather(1, top)                                # (Q, max k): a positive there?
    return {kk: hit[:, :kk].any(1).float().mean().item() for kk in ks}


def random_recall_at_k(positives: torch.Tensor, k: int | Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """The expected recall@k of a random ranking, exactly: for a query with m positives among G
    gallery items, P(at least one in the top k) = 1 - C(G - m, k) / C(G, k); averaged over queries.

    ``positives``: bool (Q, G) as for :func:`recall_at_k` (with one positive per query this is k / G).
    """
    positives = torch.as_tensor(positives)
    if positives.dim() != 2:
        raise ValueError(f"positives must be a bool tensor (Q, G), got shape {tuple(positives.shape)}")
    positives = _check_positives(positives, positives.shape[0])
    g = positives.shape[1]
    ks = _check_ks(k, g)
    counts = positives.sum(1).tolist()
    out = {}
    for kk in ks:
        total = sum(1 - math.comb(g - m, kk) / math.comb(g, kk) for m in counts)
        out[kk] = total / len(counts)
    return out


def zero_shot_classify(image_emb: torch.Tensor, class_text_emb: torch.Tensor) -> torch.Tensor:
    """Classify by the most similar class text: ``argmax_c cos(image, class_c)``.

    Args:
        image_emb: float (N, D).
        class_text_emb: float (C, D), one embedding per class (e.g. of "a photo of a {class}"),
            or (C, P, D), P prompts per class: a *prompt ensemble*, averaged as in CLIP (each
            prompt's unit vector, then the mean renormalised).

    Returns: int64 (N,) class indices.
    """
    return cosine_similarity_matrix(image_emb, class_embeddings(class_text_emb)).argmax(1)


def class_embeddings(class_text_emb: torch.Tensor) -> torch.Tensor:
    """(C, D) unit vectors: (C, D) normalised, or (C, P, D) prompt embeddings averaged per class."""
    if not isinstance(class_text_emb, torch.Tensor) or class_text_emb.dim() not in (2, 3):
        got = tuple(class_text_emb.shape) if isinstance(class_text_emb, torch.Tensor) else \
            type(class_text_emb).__name__
        raise ValueError(f"class_text_emb must be a float tensor (C, D) or (C, P, D), got {got}")
    emb = F.normalize(class_text_emb.float(), dim=-1)
    if emb.dim() == 3:
        emb = F.normalize(emb.mean(1), dim=-1)
    return emb
