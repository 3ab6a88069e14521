"""The known-answer regimes (mmcourse.data.regimes) and their bench (mmcourse bench regimes).

Fast: small splits, a probe of a few epochs, the bench on a tiny configuration.
"""
from __future__ import annotations

import json

import pytest
import torch

from mmcourse.tools.cli import build_parser
from mmcourse.data.regimes import CUE, MODALITIES, PRESETS, make_regime
from mmcourse.fusion import FUSION_METHODS
from mmcourse.reproducibility import seed_everything
from mmcourse.regime_runs import build_model, judge, train_and_test
from mmcourse.tools.bench.regimes import run_regimes_bench

SMALL = {"n_train": 60, "n_val": 20, "n_test": 40}


def _tensors(data):
    for split in ("train", "val", "test"):
        s = getattr(data, split)
        yield from (s.inputs[m] for m in MODALITIES)
        yield s.labels
        yield from (s.present[m] for m in MODALITIES)
        yield from (s.corrupted[m] for m in MODALITIES)


@pytest.mark.parametrize("name", list(PRESETS))
def test_same_seed_same_bytes_and_other_seeds_differ(name):
    a, b, c = (make_regime(name, seed=s, **SMALL) for s in (3, 3, 4))
    assert [t.numpy().tobytes() for t in _tensors(a)] == [t.numpy().tobytes() for t in _tensors(b)]
    assert not torch.equal(a.train.inputs["image"], c.train.inputs["image"])
    assert not torch.equal(a.train.labels, c.train.labels)


@pytest.mark.parametrize("name", list(PRESETS))
def test_shapes_types_and_every_preset_states_a_prediction(name):
    data = make_regime(name, seed=0, **SMALL)
    preset = data.preset
    assert preset.predicted and preset.why and preset.structure
    known = set(MODALITIES) | set(FUSION_METHODS)
    assert set(preset.predicted) <= known, f"{name} predicts {preset.predicted}"
    s = data.test
    assert s.inputs["image"].shape == (40, 1, 8, 8) and s.inputs["audio"].shape == (40, 16, 8)
    assert s.inputs["image"].dtype == torch.float32 and s.labels.dtype == torch.int64
    assert 0 <= int(s.labels.min()) and int(s.labels.max()) < data.num_classes
    batch = next(iter(s.loader(batch_size=16)))
    assert set(batch) == {"image", "audio", "label", "present"}
    assert all(p.dtype == torch.bool for p in batch["present"].values())


@pytest.mark.parametrize("knobs, words", [
    ({"classes": 1}, ["classes", ">= 2", "1"]),
    ({"classes": 17}, ["16", "17"]),
    ({"noise": -0.5}, ["noise", ">= 0", "-0.5"]),
    ({"n_train": 0}, ["n_train", ">= 10", "0"]),
    ({"n_train": 100.0}, ["n_train", "integer", "100.0"]),
    ({"colour": 3}, ["unknown knob 'colour'", "classes", "noise"]),
])
def test_bad_common_knobs_are_rejected_with_what_was_expected_and_given(knobs, words):
    with pytest.raises(ValueError) as err:
        make_regime("redundant", **knobs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("name, knobs, words", [
    ("reliability", {"corrupt": 1.5}, ["corrupt", "[0, 1]", "1.5"]),
    ("reliability", {"cue": "yes"}, ["cue", "True, False or 'other'", "'yes'"]),
    ("shift", {"test_image": 0.7, "test_audio": 0.6}, ["test_image + test_audio", "<= 1"]),
    ("imbalance", {"weak_amplitude": 0}, ["weak_amplitude", "> 0", "0"]),
    ("unique", {"classes": 4}, ["unknown knob 'classes'", "image_part"]),
    ("synergy", {"corrupt": 0.5}, ["unknown knob 'corrupt'"]),
])
def test_bad_preset_knobs_are_rejected(name, knobs, words):
    with pytest.raises(ValueError) as err:
        make_regime(name, **knobs)
    for word in words:
        assert word in str(err.value)


def test_unknown_regime_and_bad_seed():
    with pytest.raises(ValueError, match="unknown regime 'xor'.*synergy"):
        make_regime("xor")
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        make_regime("synergy", seed=-1)


def test_missing_at_test_masks_are_what_the_preset_says():
    data = make_regime("missing", seed=0, n_test=2000)
    for split in (data.train, data.val):
        assert all(bool(split.present[m].all()) for m in MODALITIES)  # training has all
    present = torch.stack([data.test.present[m] for m in MODALITIES], 1)
    assert bool(present.any(1).all()), "a test sample with no modality at all"
    share = 1 - present.all(1).float().mean().item()
    assert abs(share - data.knobs["test_missing"]) < 0.05
    for m in MODALITIES:  # a missing modality is all zeros
        gone = ~data.test.present[m]
        assert bool((data.test.inputs[m][gone] == 0).all())
    none = make_regime("missing", seed=0, test_missing=0.0, **SMALL)
    assert all(bool(none.test.present[m].all()) for m in MODALITIES)


@pytest.mark.parametrize("cue", [True, False, "other", None])
def test_reliability_corrupts_one_modality_per_sample_and_lights_the_cue(cue):
    if cue is None:  # the preset's default: the cue in the other modality
        data, cue = make_regime("reliability", seed=1, corrupt=0.6, n_train=2000), "other"
    else:
        data = make_regime("reliability", seed=1, cue=cue, corrupt=0.6, n_train=2000)
    s = data.train
    bad = torch.stack([s.corrupted[m] for m in MODALITIES], 1)
    assert not bool(bad.all(1).any()), "two corrupted modalities in one sample"
    assert abs(bad.any(1).float().mean().item() - 0.6) < 0.05
    lit = {"image": (s.inputs["image"][:, 0, 0] == CUE).all(1),
           "audio": (s.inputs["audio"][:, :, 0] == CUE).all(1)}
    other = dict(zip(MODALITIES, reversed(MODALITIES)))
    for m in MODALITIES:
        expected = {True: s.corrupted[m], False: torch.zeros_like(lit[m]),
                    "other": s.corrupted[other[m]]}[cue]
        assert torch.equal(lit[m], expected)
    if cue == "other":  # the same samples, labels and corruptions as with the cue on the modality
        own = make_regime("reliability", seed=1, cue=True, corrupt=0.6, n_train=2000).train
        assert torch.equal(own.labels, s.labels)
        assert all(torch.equal(own.corrupted[m], s.corrupted[m]) for m in MODALITIES)


def _probe(name: str, modality: str) -> float:
    """Test accuracy of one modality alone: the bench's small encoder + a linear head, trained
    for a few epochs (a quick probe, not the bench)."""
    torch.set_num_threads(1)
    data = make_regime(name, seed=0, n_train=800, n_val=200, n_test=1000)
    return train_and_test(data, modality, seed=0, epochs=5, device="cpu"), data.chance


@pytest.mark.parametrize("modality", MODALITIES)
def test_structure_synergy_single_modality_at_chance_redundant_above(modality):
    acc, chance = _probe("synergy", modality)
    assert abs(acc - chance) < 0.06, f"{modality} alone on synergy: {acc:.3f} vs chance {chance}"
    acc, chance = _probe("redundant", modality)
    assert acc > chance + 0.15, f"{modality} alone on redundant: {acc:.3f} vs chance {chance}"


def test_every_registered_fusion_builds_and_runs_on_a_regime_batch():
    data = make_regime("synergy", seed=0, **SMALL)
    batch = next(iter(data.train.loader(batch_size=8)))
    for method in (*MODALITIES, *FUSION_METHODS):
        seed_everything(0)
        logits = build_model(method, data)(batch)
        assert logits.shape == (8, data.num_classes), method


def _results(**means):
    return {m: {"mean": v[0] / 100, "std": v[1] / 100} for m, v in means.items()}


def test_judge_baseline_and_predicted_winner():
    # redundant: concat/late predicted; gated 2 points lower but within the spread (ties)
    r = judge("redundant", _results(image=(70, 1), concat=(90, 1.5), late=(90.5, 1),
                                    gated=(88.8, 2), tensor=(80, 1)), 0.25)
    assert r["won"] and r["pick"] == "late" and "gated" in r["ties"] and r["below"] == ["tensor"]
    r = judge("redundant", _results(concat=(80, 1), late=(81, 1), gated=(90, 1)), 0.25)
    assert not r["won"] and r["beaten_by"] == ["gated"] and r["best"] == "gated"
    # synergy: tensor must beat concat by 3 points beyond the larger std
    assert judge("synergy", _results(concat=(80, 1), tensor=(85, 2)), 0.25)["won"] is True
    assert judge("synergy", _results(concat=(80, 1), tensor=(84, 2)), 0.25)["won"] is False
    assert judge("synergy", _results(concat=(80, 1), late=(25, 1)), 0.25)["won"] is None


def test_bench_runs_on_a_tiny_config_and_its_json_has_the_required_keys():
    torch.set_num_threads(1)
    report = run_regimes_bench(seeds=2, epochs=1, regimes=("redundant", "synergy"),
                               methods=("image", "concat", "late", "tensor"), sizes=SMALL,
                               device="cpu", extra={})
    report = json.loads(json.dumps(report))
    assert [r["name"] for r in report["regimes"]] == ["redundant", "synergy"]
    for r in report["regimes"]:
        assert {"name", "predicted", "best", "won", "results"} <= set(r)
        assert isinstance(r["won"], bool) and r["best"] in r["results"]
        assert len(r["results"]["concat"]["runs"]) == 2
    assert "synergy_task" not in report
    extra = run_regimes_bench(seeds=1, epochs=1, regimes=("unique",), methods=("concat",),
                              sizes=SMALL, device="cpu",
                              extra={"synergy_task": lambda seeds, device: {"frozen": 0.5,
                                                                            "joint": 0.9}})
    assert extra["synergy_task"] == {"frozen": 0.5, "joint": 0.9}
    with pytest.raises(ValueError, match="unknown method 'xor'"):
        run_regimes_bench(methods=("xor",))
    with pytest.raises(ValueError, match="unknown regime"):
        run_regimes_bench(regimes=("nope",))


def test_measure_with_two_worker_processes_gives_the_same_numbers():
    from mmcourse.regime_runs import measure
    args = dict(regimes=("synergy", "missing"), methods=("audio", "concat"), seeds=2, epochs=1,
                sizes=SMALL, device="cpu")
    one, two = measure(**args), measure(**args, workers=2)
    assert one == two
    assert set(one) == {"synergy", "missing"} and len(one["synergy"]["concat"]["runs"]) == 2
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"workers must be a positive integer, got {bad!r}"):
            measure(workers=bad)
    with pytest.raises(ValueError, match="a tuple of names, got the string 'synergy'"):
        measure(regimes="synergy")


def test_aux_weight_trains_every_fusion_with_auxiliary_heads_and_leaves_single_modalities(
        monkeypatch):
    """aux_weight > 0: a fusion is trained as a MultiTaskClassifier whose loss has auxiliary
    terms of that weight; a single modality trains as it always does; bad weights are refused."""
    from mmcourse import regime_runs
    from mmcourse.multitask import MultiTaskClassifier, MultiTaskLoss
    seen = []
    real_fit = regime_runs.fit

    def recording_fit(model, *args, loss_fn=None, **kwargs):
        seen.append((type(model).__name__, loss_fn))
        return real_fit(model, *args, loss_fn=loss_fn, **kwargs)

    monkeypatch.setattr(regime_runs, "fit", recording_fit)
    data = make_regime("imbalance", seed=0, **SMALL)
    for method in ("audio", "concat", "attention"):
        acc = train_and_test(data, method, seed=0, epochs=1, device="cpu", aux_weight=2.0)
        assert 0.0 <= acc <= 1.0
    (single, plain), (concat, concat_loss), (_, attention_loss) = seen
    assert single == "UnimodalClassifier" and plain is torch.nn.functional.cross_entropy
    assert concat == "MultiTaskClassifier" and isinstance(concat_loss, MultiTaskLoss)
    assert concat_loss.aux_weights == 2.0 and isinstance(attention_loss.model, MultiTaskClassifier)
    seen.clear()
    train_and_test(data, "concat", seed=0, epochs=1, device="cpu")  # the default: no heads
    assert seen[0][0] == "MultimodalClassifier"
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="aux_weight must be a finite number >= 0"):
            regime_runs.measure(aux_weight=bad)


def test_symbols_are_what_each_modality_shows():
    data = make_regime("synergy", seed=0, **SMALL)
    s = data.train
    assert torch.equal(s.labels, (s.symbols["image"] + s.symbols["audio"]) % data.num_classes)
    rel = make_regime("reliability", seed=0, **SMALL).train
    for m in MODALITIES:  # a corrupted modality shows another symbol than the label
        assert torch.equal(rel.symbols[m] != rel.labels, rel.corrupted[m])


def test_num_classes_without_generating():
    from mmcourse.data.regimes import num_classes
    assert num_classes("synergy") == 4 and num_classes("unique") == 4
    assert num_classes("unique", image_part=3, audio_part=2) == 6
    with pytest.raises(ValueError, match="unknown regime"):
        num_classes("nope")


def test_cli_has_bench_regimes():
    args = build_parser().parse_args(["bench", "regimes", "--seeds", "4", "--json"])
    assert (args.seeds, args.json, args.epochs, args.workers) == (4, True, 10, 1)
