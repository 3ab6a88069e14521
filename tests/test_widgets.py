"""The fusion explorer: corrupting one sample, the live widgets (driven without a browser by
setting control values) and the static fallback."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.course import QUALITY_LEVELS, make_course_dataset
from mmcourse.features import course_features
from mmcourse.fusion import AttentionFusion, ConcatFusion, GatedFusion
from mmcourse.what_if import corrupt_sample, describe_text, explain_sample, wrong_class
from mmcourse.widgets import PRESETS, FusionExplorer, fusion_explorer, static_requested


@pytest.fixture(scope="module")
def setup():
    splits = make_course_dataset(seed=0, size={"train": 48, "val": 16, "test": 12})
    feats = course_features(seed=0, splits=splits, epochs={"image": 1, "audio": 1, "text": 1},
                            cache=False, device="cpu")
    torch.manual_seed(0)
    model = MultimodalClassifier({m: None for m in feats.dims}, GatedFusion(feats.dims, 16), 8)
    return splits, feats, model


def test_corrupt_sample(setup):
    splits, _, _ = setup
    test = splits["test"]
    i = int(np.flatnonzero(test.present["image"] & test.present["audio"] & test.present["text"])[0])
    same = corrupt_sample(test, i)
    assert len(same) == 1 and np.array_equal(same.images[0], test.images[i])
    assert same.texts == [test.texts[i]]
    removed = corrupt_sample(test, i, remove=("image", "text"))
    assert not removed.present["image"][0] and not removed.present["text"][0]
    assert removed.present["audio"][0] and removed.images.max() == 0 and removed.texts == [""]
    noisy = corrupt_sample(test, i, image_noise=0.5, image_occlusion=0.5, audio_mix=1.0)
    assert not np.array_equal(noisy.images[0], test.images[i])
    assert noisy.audio_lengths[0] >= test.audio_lengths[i]
    wrong = test.classes[wrong_class(test.labels[i], 8)]
    misleading = corrupt_sample(test, i, text="misleading")
    assert wrong in misleading.texts[0] and test.classes[test.labels[i]] not in misleading.texts[0]
    assert misleading.quality[0, 2] == QUALITY_LEVELS["text"].index("misleading")
    assert "object" in describe_text(test, i, "uninformative")
    with pytest.raises(ValueError, match="unknown modality"):
        corrupt_sample(test, i, remove=("video",))
    with pytest.raises(ValueError, match="text must be"):
        corrupt_sample(test, i, text="lies")
    with pytest.raises(IndexError):
        corrupt_sample(test, 99)


def test_explain_sample(setup):
    splits, feats, model = setup
    view = explain_sample(model, feats, corrupt_sample(splits["test"], 0, remove=("image",)))
    assert view.probs.shape == (8,) and abs(view.probs.sum() - 1) < 1e-5
    assert view.weights["image"] == 0.0 and abs(sum(view.weights.values()) - 1) < 1e-5
    assert "prediction:" in view.summary() and "truth:" in view.summary()
    empty = explain_sample(model, feats, corrupt_sample(splits["test"], 0,
                                                        remove=("image", "audio", "text")))
    assert np.allclose(empty.probs, 1 / 8) and sum(empty.weights.values()) == 0
    attention = MultimodalClassifier({m: None for m in feats.dims},
                                     AttentionFusion(feats.dims, 16, heads=2), 8)
    view = explain_sample(attention, feats, corrupt_sample(splits["test"], 1, remove=("text",)))
    assert view.weights["text"] == 0.0 and 0 < sum(view.weights.values()) <= 1 + 1e-5  # + summary
    concat = MultimodalClassifier({m: None for m in feats.dims}, ConcatFusion(feats.dims, 16), 8)
    with pytest.raises(ValueError, match="GatedFusion"):
        explain_sample(concat, feats, corrupt_sample(splits["test"], 0))


def test_live_explorer_reacts_to_its_controls(setup):
    splits, feats, model = setup
    explorer = fusion_explorer(model, feats, splits["test"], static=False, show=False)
    assert isinstance(explorer, FusionExplorer)
    expected = {"index", "image_noise", "image_occlusion", "audio_mix", "text", "remove_image",
                "remove_audio", "remove_text"}
    assert expected <= set(explorer.controls)
    before_summary, before_png = explorer.summary.value, explorer.image.value
    assert before_png[:4] == b"\x89PNG" and "prediction:" in before_summary
    explorer.controls["remove_audio"].value = True          # observers call update()
    assert explorer.view.weights["audio"] == 0.0
    assert explorer.summary.value != before_summary and explorer.image.value != before_png
    png = explorer.image.value
    explorer.controls["image_noise"].value = 0.8
    assert explorer.image.value != png
    explorer.controls["index"].value = 3
    assert explorer.view.label == int(splits["test"].labels[3])
    explorer.controls["text"].value = "misleading"
    assert explorer.settings()["text"] == "misleading"
    assert explorer.update() is explorer.view


def test_static_fallback(setup, monkeypatch):
    splits, feats, model = setup
    fig = fusion_explorer(model, feats, splits["test"], index=2, static=True, show=False)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 5 * len(PRESETS)
    assert "static" in fig.get_suptitle()
    two = fusion_explorer(model, feats, splits["test"], static=True, show=False,
                          presets={"clean": {}, "no text": {"remove": ("text",)}})
    assert len(two.axes) == 10
    monkeypatch.setenv("MMCOURSE_STATIC_WIDGETS", "1")
    assert static_requested()
    assert isinstance(fusion_explorer(model, feats, splits["test"], show=False), Figure)
    monkeypatch.setenv("MMCOURSE_STATIC_WIDGETS", "0")
    assert not static_requested()
    monkeypatch.delenv("MMCOURSE_STATIC_WIDGETS")
    monkeypatch.setenv("MMCOURSE_PROGRESS", "1")
    assert static_requested()          # no live kernel in pytest
    monkeypatch.setenv("MMCOURSE_PROGRESS", "0")
    assert static_requested()
