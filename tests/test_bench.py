"""mmcourse bench fusion: the protocol's pieces, and a tiny end-to-end run (fast)."""
from __future__ import annotations

import json

import pytest

from mmcourse import bench
from mmcourse.cli import main as cli_main
from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS, QUALITY_PROBS, make_course_dataset
from mmcourse.features import course_features


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_corruption_probs(modality):
    levels = QUALITY_LEVELS[modality]
    for s in bench.SEVERITIES:
        probs = bench.corruption_probs(modality, s)
        assert len(probs) == len(levels) and sum(probs) == pytest.approx(1.0)
        assert probs[levels.index("missing")] == 0.0
        assert probs[0] == pytest.approx(1 - s)
    # corrupted levels keep their usual proportions
    worst = bench.corruption_probs(modality, 1.0)
    corrupted = [i for i in range(1, len(levels)) if levels[i] != "missing"]
    ratios = {worst[i] / QUALITY_PROBS[modality][i] for i in corrupted}
    assert max(ratios) == pytest.approx(min(ratios))


def test_corruption_probs_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        bench.corruption_probs("video", 0.5)
    with pytest.raises(ValueError, match=r"severity must be in \[0, 1\], got 1.5"):
        bench.corruption_probs("image", 1.5)


def test_area_under_curve():
    assert bench.area_under_curve([1, 1, 1, 1, 1]) == pytest.approx(1.0)
    assert bench.area_under_curve([1.0, 0.75, 0.5, 0.25, 0.0]) == pytest.approx(0.5)
    assert bench.area_under_curve([0.8, 0.4], severities=(0.0, 1.0)) == pytest.approx(0.6)


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
    assert "2 training seeds" in text
    for method in ("image", "text", "concat", "gated", "cross"):
        assert f"\n{method:10s}" in text


def test_bench_rejects_unknown_methods_and_seeds():
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        bench.run_fusion_bench(methods=("bogus",))
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        bench.run_fusion_bench(seeds=0)
    with pytest.raises(SystemExit, match="unknown method 'bogus'"):
        cli_main(["bench", "fusion", "--methods", "bogus"])
