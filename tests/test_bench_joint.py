"""mmcourse bench joint (mmcourse.tools.bench.joint): fusions trained end to end on the course
data; a tiny run (fast), the same encoders for every fusion, clear errors for bad arguments."""
from __future__ import annotations

import json

import pytest
import torch

from mmcourse.fusion import AttentionFusion, ConcatFusion, GatedFusion
from mmcourse.joint import build_model
from mmcourse.reproducibility import seed_everything
from mmcourse.tools.bench import joint as bench
from mmcourse.tools.cli import main as cli_main

TINY = {"train": 64, "val": 32, "test": 32}


@pytest.fixture(scope="module")
def tiny_report():
    return bench.run_joint_bench(seeds=2, epochs=1, size=TINY, device="cpu")


def test_a_tiny_run_reports_every_method_condition_and_difference(tiny_report):
    res = tiny_report["results"]
    assert list(res) == ["concat", "gated", "attention"]
    for entry in res.values():
        assert list(entry) == ["test", "no image", "no audio", "no text"]
        for cell in entry.values():
            assert len(cell["runs"]) == 2 and all(0.0 <= a <= 1.0 for a in cell["runs"])
            assert cell["mean"] == pytest.approx(sum(cell["runs"]) / 2)
    summary = tiny_report["summary"]
    assert list(summary) == ["gated - concat", "attention - concat"]
    expected = 100 * (res["gated"]["test"]["mean"] - res["concat"]["test"]["mean"])
    assert summary["gated - concat"]["test"] == pytest.approx(expected)
    assert tiny_report["config"]["seeds"] == [0, 1] and tiny_report["config"]["epochs"] == 1
    json.dumps(tiny_report)  # JSON-able
    table = bench.format_joint_table(tiny_report)
    assert "end to end" in table and "attention - concat" in table
    rows = [line for line in table.splitlines() if line.startswith("gated ") and " - " not in line]
    assert len(rows) == 1 and "+-" in rows[0]


def test_the_same_seed_gives_the_same_run(tiny_report):
    again = bench.run_joint_bench(seeds=2, epochs=1, size=TINY, device="cpu",
                                  methods=("gated",))
    assert again["results"]["gated"] == tiny_report["results"]["gated"]
    assert again["summary"] == {}  # no concat, nothing to compare with


def test_build_model_swaps_only_the_fusion():
    models = {}
    for name in ("concat", "gated", "attention"):
        seed_everything(3)
        models[name] = build_model(50, num_classes=8, dim=16, fusion=name)
    assert isinstance(models["concat"].fusion, ConcatFusion)
    assert isinstance(models["gated"].fusion, GatedFusion)
    assert isinstance(models["attention"].fusion, AttentionFusion)
    reference = models["concat"].encoders.state_dict()
    for model in models.values():  # the same seed, the same encoders, whatever the fusion
        state = model.encoders.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference)


@pytest.mark.parametrize("kwargs, message", [
    ({"methods": ("concat", "nope")}, r"unknown fusion method\(s\) \['nope'\]"),
    ({"methods": ()}, "methods is empty"),
    ({"seeds": 0}, "seeds must be a positive integer"),
    ({"epochs": 1.5}, "epochs must be a positive integer"),
])
def test_bad_arguments_are_refused_before_any_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bench.run_joint_bench(size=TINY, **kwargs)


def test_the_command_line_says_what_was_wrong(capsys):
    with pytest.raises(SystemExit, match=r"mmcourse bench joint: unknown fusion method"):
        cli_main(["bench", "joint", "--methods", "concat", "nope"])
