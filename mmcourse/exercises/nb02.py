"""Checks for the exercises of notebook 02 (text: from words to features)."""
from __future__ import annotations

import math
import re

import numpy as np
import torch

from mmcourse.exercises.core import call, describe, expect_close, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions, recorded


@register("2.1", "masked_mean_pool averages the real tokens only",
          hint="the mean over the real tokens only: mask out the positions at or beyond lengths[b], "
               "sum over the time axis and divide by the number of real tokens (not by T).")
def check_masked_mean_pool(masked_mean_pool) -> str:
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 5, 4, generator=gen)
    hidden[0, 2:] = 50.0  # padding with large values: any leak shows
    hidden[1, 4:] = -50.0
    lengths = torch.tensor([2, 4, 5])
    got = call(masked_mean_pool, hidden.clone(), lengths.clone())
    expect_tensor("masked_mean_pool(hidden, lengths)", got, shape=(3, 4))
    want = torch.stack([hidden[b, : int(n)].mean(0) for b, n in enumerate(lengths)])
    if torch.allclose(got.float(), hidden.mean(1), atol=1e-4):
        fail("masked_mean_pool(hidden, lengths) averaged over all T positions, padding included; "
             "only the first lengths[b] positions of text b are real tokens")
    if torch.allclose(got.float(), want * lengths[:, None] / hidden.shape[1], atol=1e-4):
        fail("masked_mean_pool summed the real tokens but divided by T (the padded length); "
             "divide by lengths[b], the number of real tokens")
    if torch.allclose(got.float(), want * lengths[:, None], atol=1e-4):
        fail("masked_mean_pool returned the SUM of the real tokens; divide by lengths[b] for the mean")
    one_more = torch.arange(hidden.shape[1])[None, :] <= lengths[:, None]
    if torch.allclose(got.float(), (hidden * one_more[..., None]).sum(1) / lengths[:, None], atol=1e-4):
        fail("masked_mean_pool also counted position lengths[b], the first padding token: the "
             "real tokens of text b are positions 0 to lengths[b] - 1, so the mask is "
             "arange(T) < lengths (strictly less)")
    expect_close("masked_mean_pool(hidden, lengths)", got.float(), want, atol=1e-4)
    return "padding ignored in a batch of 3"


@register("2.2", "oov_rate counts the words missing from the vocabulary",
          hint="count word OCCURRENCES over all the texts (a repeated unknown word counts each "
               "time) and divide the unknown ones by all of them; a word is known when it is a key "
               "of tokenizer.get_vocab().")
def check_oov_rate(oov_rate, tokenizer=None) -> str:
    from mmcourse.encoders.text import train_tokenizer

    if tokenizer is None:
        tokenizer = train_tokenizer(["a red star", "a blue ring", "the star is red"], vocab_size=60)
    texts = ["A red star.", "A green star; a GREEN ring", "", "the purple hexagon"]
    vocab = tokenizer.get_vocab()
    words = [w for t in texts for w in re.findall(r"[a-z]+", t.lower())]
    oov = [w for w in words if w not in vocab]
    want = len(oov) / len(words)
    got = call(oov_rate, tokenizer, texts)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float, np.floating, np.integer)) or isinstance(got, bool):
        fail(f"oov_rate(tokenizer, texts) returned {describe(got)}; a number between 0 and 1 was "
             f"expected")
    got = float(got)
    if math.isclose(got, len(oov)):
        fail(f"oov_rate returned {got:g}, the NUMBER of out-of-vocabulary words; divide by the "
             f"number of words ({len(words)}) for a rate")
    if math.isclose(got, 1 - want, abs_tol=1e-9):
        fail(f"oov_rate returned {got:.3f}, the share of words IN the vocabulary; the rate asked "
             f"for is 1 minus that")
    unique = sorted(set(words))
    if math.isclose(got, len([w for w in unique if w not in vocab]) / len(unique), abs_tol=1e-9):
        fail("oov_rate counted each distinct word once; count every occurrence (a word that "
             "appears twice counts twice)")
    cased = [w for t in texts for w in re.findall(r"[A-Za-z]+", t)]
    if math.isclose(got, sum(w not in vocab for w in cased) / len(cased), abs_tol=1e-9):
        fail("oov_rate treated 'A' and 'GREEN' as unknown: lower-case the texts first, as the "
             "tokenizer does")
    expect_close("oov_rate(tokenizer, texts)", got, want, atol=1e-9)
    return f"{len(oov)} of {len(words)} words out of vocabulary in the check texts"


@register("2.3", "bag_of_words counts each vocabulary word",
          hint="lower-case the text, split it into words and add 1 at the vocabulary position of "
               "every word that is in vocab; ignore the other words.")
def check_bag_of_words(bag_of_words) -> str:
    vocab = ["big", "red", "star", "ring", "the", "a"]
    cases = [("A big red star, a BIG star!", [2, 1, 2, 0, 0, 2]),
             ("the blue ring", [0, 0, 0, 1, 1, 0]),
             ("", [0, 0, 0, 0, 0, 0])]
    for text, counts in cases:
        want = torch.tensor(counts, dtype=torch.float32)
        got = call(bag_of_words, text, vocab)
        name = f"bag_of_words({text!r}, vocab)"
        expect_tensor(name, got)
        if got.shape != (len(vocab),):
            fail(f"{name} has shape {tuple(got.shape)}; one count per vocabulary word, shape "
                 f"({len(vocab)},), was expected (words not in vocab are simply not counted)")
        got = got.float()
        if torch.equal(got, (want > 0).float()) and not torch.equal(want, (want > 0).float()):
            fail(f"{name} is {got.tolist()}: 1 for present words; the exercise asks for COUNTS "
                 f"({want.tolist()}): 'star' appears twice")
        if not torch.equal(got, want):
            fail(f"{name} is {got.tolist()} but {want.tolist()} was expected for vocab {vocab}"
                 + (" (lower-case the text first: 'A' and 'BIG' are 'a' and 'big')"
                    if text != text.lower() else ""))
    return "counts of 3 texts right"


@register("2.4", "cosine_similarity compares every pair of embeddings",
          hint="scale every row of a and of b to unit length, then take all the pairwise dot "
               "products in one matrix product.")
def check_cosine_similarity(cosine_similarity) -> str:
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(3, 6, generator=gen) * torch.tensor([[1.0], [5.0], [0.2]])
    b = torch.randn(4, 6, generator=gen) * 3.0
    b[1] = -2 * a[0]
    got = call(cosine_similarity, a.clone(), b.clone())
    expect_tensor("cosine_similarity(a, b)", got, shape=(3, 4))
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    want = an @ bn.T
    if got.shape == want.shape and torch.allclose(got.float(), a @ b.T, atol=1e-4):
        fail("cosine_similarity returned plain dot products a @ b.T; divide each row by its "
             "length first, so that the result is in [-1, 1]")
    if torch.allclose(got.float(), (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T,
                      atol=1e-4):
        fail("cosine_similarity normalised each COLUMN (dim=0); each embedding is a ROW, so "
             "divide every row by its own length: x / x.norm(dim=1, keepdim=True)")
    if torch.allclose(got.float(), an @ b.T, atol=1e-4) or torch.allclose(got.float(), a @ bn.T, atol=1e-4):
        fail("cosine_similarity normalised only one of a and b; divide the rows of BOTH by their "
             "lengths")
    if torch.allclose(got.float(), torch.cdist(a, b), atol=1e-4):
        fail("cosine_similarity returned Euclidean distances; the cosine of the angle between "
             "the vectors was asked for")
    expect_close("cosine_similarity(a, b)", got.float(), want, atol=1e-5)
    return "3 x 4 similarities in [-1, 1]"


@register("2.5", "predicted test accuracy of a pretrained and a from-scratch encoder on 1000 texts",
          hint="ask what each model must learn from the 1000 labelled texts: the frozen MiniLM "
               "already maps sentences to vectors and only a linear layer is trained; the small "
               "transformer starts from random weights. Any well-formed prediction passes: the "
               "measurement, not the check, says whether you were right.")
def check_transfer_prediction(predicted_accuracy) -> str:
    accuracy = expect_fractions("predicted_accuracy", predicted_accuracy, ("pretrained", "scratch"),
                                "a test accuracy")
    return recorded(accuracy, "the next cells measure them")
