"""mmcourse bench fusion (mmcourse.tools.bench.fusion): the protocol's pieces, a tiny end-to-end
run (fast), and a new fusion method benchmarked through its interface alone."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from mmcourse.data.course import QUALITY_LEVELS, make_course_dataset
from mmcourse.features import course_features
from mmcourse.fusion import FUSION_METHODS, Fusion
from mmcourse.tools.bench import fusion as bench
from mmcourse.tools.cli import main as cli_main


def test_test_conditions_share_objects_and_differ_in_quality():
    conditions = bench.test_conditions(n_test=40)
    assert set(conditions) >= {"test", "clean", "no image", "image@0", "image@1", "text@0.5"}
    labels = conditions["test"].labels
    for split in conditions.values():
        assert (split.labels == labels).all()  # the same objects everywhere
    assert (conditions["no audio"].quality[:, 1] == QUALITY_LEVELS["audio"].index("missing")).all()
    assert (conditions["clean"].quality == 0).all()
    assert (conditions["image@1"].quality[:, 0] != 0).all()


@pytest.fixture(scope="module")
def tiny_report(monkeypatch_module):
    splits = make_course_dataset(seed=0, size={"train": 96, "val": 48})
    cache = {}

    def tiny_features(seed, device=None):
        if seed not in cache:
            cache[seed] = course_features(seed=seed, splits=splits, dim=16, cache=False,
                                          epochs={"image": 1, "audio": 1, "text": 1})
        return cache[seed]

    monkeypatch_module.setattr(bench, "course_features", tiny_features)
    return bench.run_fusion_bench(seeds=2, epochs=1, n_test=24,
                                  methods=("image", "text", "concat", "gated", "cross"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_run_fusion_bench_reports_every_method_and_condition(tiny_report):
    res = tiny_report["results"]
    assert list(res) == ["image", "text", "concat", "gated", "cross"]
    for entry in res.values():
        for key in ("test", "clean", "no image", "audio@0.5", "auc image", "auc text"):
            assert 0.0 <= entry[key]["mean"] <= 1.0 and len(entry[key]["runs"]) == 2
    # unimodal baselines: an image-only model cannot see the image being removed
    assert res["image"]["no image"]["mean"] <= 0.25
    json.dumps(tiny_report)  # JSON-able
    summary = tiny_report["summary"]
    assert summary["best_single"]["method"] in ("image", "text")
    assert set(summary) >= {"gated - concat", "cross - concat"}


def test_format_fusion_table(tiny_report):
    text = bench.format_fusion_table(tiny_report)
    assert "Fusion bench" in text and "gated - concat" in text and "Best fusion" in text
    assert "at least 3 points above concat under both corruption and missing" in text
    assert "2 training seeds" in text
    for method in ("image", "text", "concat", "gated", "cross"):
        assert f"\n{method:10s}" in text


def test_bench_rejects_unknown_methods_and_seeds():
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        bench.run_fusion_bench(methods=("bogus",))
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        bench.run_fusion_bench(seeds=0)
    with pytest.raises(SystemExit, match="unknown method 'bogus'"):
        cli_main(["bench", "fusion", "--methods", "bogus"])


class _ScoreAverage(Fusion):
    """A stand-in for a new method that outputs class scores: a linear map per modality to
    ``out_dim`` scores, averaged over the present modalities (late fusion under another name)."""

    outputs_logits = True

    def __init__(self, dims, out_dim):
        super().__init__(dims, out_dim)
        self.heads = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in dims.items()})

    def fuse(self, pooled, present):
        scores = torch.stack([self.heads[m](pooled[m]) for m in self.modalities], dim=1)
        weights = present.unsqueeze(-1).to(scores.dtype)
        return (scores * weights).sum(1) / weights.sum(1)


class _SequenceMean(Fusion):
    """A stand-in for a new method that reads sequences: the mean over every real position."""

    uses_sequences = True

    def __init__(self, dims, out_dim):
        super().__init__(dims, out_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in dims.items()})
        self.seen_lengths: list[int] = []

    def fuse_tokens(self, tokens, positions, present, pooled):
        self.seen_lengths = [tokens[m].shape[1] for m in self.modalities]
        total = sum((self.proj[m](tokens[m]) * positions[m].unsqueeze(-1)).sum(1)
                    for m in self.modalities)
        count = sum(positions[m].sum(1, keepdim=True) for m in self.modalities)
        return torch.relu(total / count.clamp(min=1))


def test_a_new_method_is_benchmarked_through_its_interface(tiny_report, monkeypatch):
    """Methods registered after import are measured by what they declare, not by their name: a
    method that outputs class scores fuses straight to the classes with no head after it, a
    method that reads sequences gets every position of every modality."""
    monkeypatch.setitem(FUSION_METHODS, "score_average", _ScoreAverage)
    monkeypatch.setitem(FUSION_METHODS, "sequence_mean", _SequenceMean)
    assert bench.bench_methods()[-2:] == ("score_average", "sequence_mean")
    feats = bench.course_features(seed=0)  # the tiny features of the fixture
    scores = bench.train_fusion(feats, "score_average", seed=0, epochs=1)
    assert scores.fusion.out_dim == len(feats.classes) and isinstance(scores.head, nn.Identity)
    sequences = bench.train_fusion(feats, "sequence_mean", seed=0, epochs=1)
    assert sequences.fusion.out_dim == 64 and not isinstance(sequences.head, nn.Identity)
    assert max(sequences.fusion.seen_lengths) > 1  # it was given sequences, not pooled vectors
    report = bench.run_fusion_bench(seeds=1, epochs=1, n_test=24,
                                    methods=("image", "concat", "score_average"))
    assert 0.0 <= report["results"]["score_average"]["test"]["mean"] <= 1.0
    assert "score_average - concat" in report["summary"]
