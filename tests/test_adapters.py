"""Tests of mmcourse.data.adapters on small files written in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from mmcourse.data.adapters import (
    AudioFolder,
    ImageFolderData,
    TextFileData,
    digits_images,
    load_audio_folder,
    load_image_folder,
    load_text_file,
    wav_declared_frames,
)
from mmcourse.data.pairing import encode_labels, pair_modalities_by_label
from mmcourse.data.dataset import MultimodalDataset, collate_multimodal


def write_tone(path: Path, seconds: float = 0.2, rate: int = 8000, freq: float = 440.0, channels: int = 1) -> None:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 2:
        wave = np.stack([wave, np.zeros_like(wave)], axis=1)
    soundfile.write(str(path), wave, rate)


def write_image(path: Path, size=(6, 4), colour=(255, 0, 0), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


# --------------------------------------------------------------------------------------------
# digits_images
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits32():
    return digits_images(size=32)


def test_digits_shapes_dtypes_and_range(digits32):
    images, labels = digits32
    assert images.shape == (1797, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 1], images[:, 2])


def test_digits_deterministic_and_seeded(digits32):
    images, labels = digits_images(size=32, seed=0)
    assert np.array_equal(images, digits32[0]) and np.array_equal(labels, digits32[1])
    other_images, other_labels = digits_images(size=32, seed=1)
    assert not np.array_equal(other_labels, labels)
    assert sorted(other_labels.tolist()) == sorted(labels.tolist())
    from sklearn.datasets import load_digits

    _, raw_labels = digits_images(size=8, seed=None)
    assert np.array_equal(raw_labels, load_digits().target)


def test_digits_size_8_is_the_original_scaled():
    from sklearn.datasets import load_digits

    images, _ = digits_images(size=8, seed=None)
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    assert np.array_equal(images[:, 0], expected)


def test_digits_colour():
    images, _ = digits_images(size=16, colour=(255, 0, 128), seed=None)
    assert images.shape == (1797, 3, 16, 16)
    assert images[:, 1].max() == 0
    assert images[:, 0].max() == 255 and images[:, 2].max() == 128


@pytest.mark.parametrize("kwargs, fragment", [({"size": 0}, "size"), ({"colour": (300, 0, 0)}, "colour"), ({"colour": (1, 2)}, "colour")])
def test_digits_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        digits_images(**kwargs)


# --------------------------------------------------------------------------------------------
# load_audio_folder
# --------------------------------------------------------------------------------------------

def test_audio_folder_reads_files(tmp_path):
    write_tone(tmp_path / "7_jackson_10.wav")
    write_tone(tmp_path / "7_jackson_2.wav", seconds=0.1)
    write_tone(tmp_path / "3_theo_0.wav", channels=2)
    (tmp_path / "README.md").write_text("not audio")
    audio = load_audio_folder(tmp_path)
    assert isinstance(audio, AudioFolder) and len(audio) == 3
    assert [f.name for f in audio.files] == ["3_theo_0.wav", "7_jackson_2.wav", "7_jackson_10.wav"]
    assert audio.labels == ["3", "7", "7"]
    assert audio.speakers == ["theo", "jackson", "jackson"]
    assert audio.sample_rate == 8000
    assert all(w.dtype == torch.float32 and w.dim() == 1 for w in audio.waveforms)
    assert [w.shape[0] for w in audio.waveforms] == [1600, 800, 1600]
    # stereo (tone, silence) -> mono mean: half the amplitude
    assert audio.waveforms[0].abs().max() == pytest.approx(0.25, abs=1e-3)
    assert audio.waveforms[2].abs().max() == pytest.approx(0.5, abs=1e-3)


def test_audio_speaker_names_with_underscores(tmp_path):
    write_tone(tmp_path / "on_mary_ann_3.wav")
    audio = load_audio_folder(tmp_path)
    assert audio.labels == ["on"] and audio.speakers == ["mary_ann"]


def test_audio_resampling(tmp_path):
    write_tone(tmp_path / "1_a_0.wav", rate=8000)
    write_tone(tmp_path / "2_b_0.wav", rate=16000)
    with pytest.raises(ValueError, match=r"different sample rates.*8000 Hz.*16000 Hz.*sample_rate="):
        load_audio_folder(tmp_path)
    audio = load_audio_folder(tmp_path, sample_rate=8000)
    assert audio.sample_rate == 8000
    assert [w.shape[0] for w in audio.waveforms] == [1600, 1600]
    assert all(w.dtype == torch.float32 for w in audio.waveforms)


def test_audio_error_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_audio_folder(tmp_path / "nowhere")


def test_audio_error_no_wav_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no \.wav files.*7_jackson_32\.wav"):
        load_audio_folder(tmp_path)


def test_audio_error_bad_name(tmp_path):
    write_tone(tmp_path / "1_a_0.wav")
    write_tone(tmp_path / "hello.wav")
    with pytest.raises(ValueError, match=r"'hello\.wav'.*\{label\}_\{speaker\}_\{n\}\.wav"):
        load_audio_folder(tmp_path)


def test_audio_error_corrupted_file(tmp_path):
    write_tone(tmp_path / "1_a_0.wav")
    (tmp_path / "1_a_1.wav").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match=r"could not read audio file .*1_a_1\.wav"):
        load_audio_folder(tmp_path)


def test_audio_error_empty_file(tmp_path):
    soundfile.write(str(tmp_path / "1_a_0.wav"), np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match=r"1_a_0\.wav is empty"):
        load_audio_folder(tmp_path)


def test_audio_error_bad_sample_rate(tmp_path):
    write_tone(tmp_path / "1_a_0.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio_folder(tmp_path, sample_rate=0)


def test_audio_error_truncated_file(tmp_path):
    write_tone(tmp_path / "1_a_0.wav", seconds=0.5)  # 4000 frames of 16 bits after a 44-byte header
    data = (tmp_path / "1_a_0.wav").read_bytes()
    assert wav_declared_frames(tmp_path / "1_a_0.wav") == 4000
    (tmp_path / "1_a_0.wav").write_bytes(data[: 44 + 2 * 1500])
    with pytest.raises(ValueError, match=r"1_a_0\.wav is truncated: its header announces 4000 "
                                         r"frames, the file holds 1500"):
        load_audio_folder(tmp_path)


def test_wav_declared_frames_skips_other_chunks_and_unknown_sizes(tmp_path):
    path = tmp_path / "f.wav"
    soundfile.write(str(path), np.zeros((10, 2), dtype=np.float32), 8000, subtype="FLOAT")
    assert wav_declared_frames(path) == 10  # a float WAV has a 'fact' chunk before 'data'
    (tmp_path / "x.wav").write_bytes(b"not a wav file at all")
    assert wav_declared_frames(tmp_path / "x.wav") is None


@pytest.mark.parametrize("samples, message", [
    ([0.0, 1.5, -2.0, 0.1], r"holds samples up to 2 in magnitude; expected floats in \[-1, 1\]"),
    ([0.0, np.nan, 0.2, np.inf], r"holds 2 non-finite samples \(NaN or infinity, first at frame "
                                 r"1\); expected samples in \[-1, 1\]"),
])
def test_audio_error_float_samples_outside_the_unit_range(tmp_path, samples, message):
    soundfile.write(str(tmp_path / "1_a_0.wav"), np.array(samples, dtype=np.float32), 8000,
                    subtype="FLOAT")
    with pytest.raises(ValueError, match=r"1_a_0\.wav " + message):
        load_audio_folder(tmp_path)


def test_audio_full_scale_float_samples_load(tmp_path):
    soundfile.write(str(tmp_path / "1_a_0.wav"), np.array([0, 1, -1], dtype=np.float32), 8000,
                    subtype="FLOAT")
    assert load_audio_folder(tmp_path).waveforms[0].tolist() == [0.0, 1.0, -1.0]


# --------------------------------------------------------------------------------------------
# load_image_folder
# --------------------------------------------------------------------------------------------

def test_image_folder_reads_classes(tmp_path):
    write_image(tmp_path / "dog" / "b.png", colour=(0, 255, 0))
    write_image(tmp_path / "cat" / "a10.jpg", colour=(0, 0, 255))
    write_image(tmp_path / "cat" / "a2.bmp", colour=(255, 255, 255))
    write_image(tmp_path / "dog" / "grey.png", colour=128, mode="L")
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    data = load_image_folder(tmp_path)
    assert isinstance(data, ImageFolderData)
    assert data.classes == ["cat", "dog"]
    assert data.images.shape == (4, 3, 4, 6) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 0, 1, 1]
    assert [f.name for f in data.files] == ["a2.bmp", "a10.jpg", "b.png", "grey.png"]
    assert data.images[0, :, 0, 0].tolist() == [255, 255, 255]
    assert data.images[2, :, 0, 0].tolist() == [0, 255, 0]
    assert data.images[3, :, 0, 0].tolist() == [128, 128, 128]  # grey -> RGB


def test_image_folder_resize(tmp_path):
    write_image(tmp_path / "a" / "1.png", size=(10, 7))
    write_image(tmp_path / "b" / "1.png", size=(3, 5))
    data = load_image_folder(tmp_path, size=8)
    assert data.images.shape == (2, 3, 8, 8)


def test_image_folder_error_mixed_sizes(tmp_path):
    write_image(tmp_path / "a" / "1.png", size=(10, 7))
    write_image(tmp_path / "b" / "1.png", size=(3, 5))
    with pytest.raises(ValueError, match=r"different sizes.*10x7.*3x5.*size="):
        load_image_folder(tmp_path)


def test_image_folder_error_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")


def test_image_folder_error_no_class_folders(tmp_path):
    write_image(tmp_path / "1.png")
    with pytest.raises(ValueError, match="no class folders.*1 images directly"):
        load_image_folder(tmp_path)


def test_image_folder_error_empty_class(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*b holds no images"):
        load_image_folder(tmp_path)


def test_image_folder_error_unreadable(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    (tmp_path / "a" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"could not read image .*2\.png"):
        load_image_folder(tmp_path)


# --------------------------------------------------------------------------------------------
# load_text_file
# --------------------------------------------------------------------------------------------

def test_text_file_tab_separated(tmp_path):
    path = tmp_path / "captions.tsv"
    path.write_text("# a comment\n7\ta seven\n\n  \n3\t a three, with\ttab \n", encoding="utf-8")
    data = load_text_file(path)
    assert isinstance(data, TextFileData) and len(data) == 2
    assert data.labels == ["7", "3"]
    assert data.texts == ["a seven", "a three, with\ttab"]


def test_text_file_csv(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text('id,text,label\n1,"a seven, clearly",7\n2,été,3\n', encoding="utf-8")
    data = load_text_file(path)
    assert data.labels == ["7", "3"] and data.texts == ["a seven, clearly", "été"]


def test_text_file_error_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_text_file(tmp_path / "nope.txt")


def test_text_file_error_no_tab(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1\tok\n2 no tab here\n")
    with pytest.raises(ValueError, match=r"line 2.*no tab.*'2 no tab here'"):
        load_text_file(path)


def test_text_file_error_empty_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1\tok\n2\t   \n")
    with pytest.raises(ValueError, match=r"line 2: empty text for label '2'"):
        load_text_file(path)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("label,text\n1,ok\n2,\n")
    with pytest.raises(ValueError, match=r"line 3: empty text"):
        load_text_file(csv_path)


def test_text_file_error_missing_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("category,text\n1,ok\n")
    with pytest.raises(ValueError, match=r"missing \['label'\].*found \['category', 'text'\]"):
        load_text_file(path)


def test_text_file_error_no_samples(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no samples"):
        load_text_file(path)


@pytest.mark.parametrize("header, line", [("label\ttext", "7\ta seven"),
                                          ("Text\tLabel", "a seven\t7"),
                                          ("id\tLABEL\ttext", "s1\t7\ta seven")])
def test_text_file_header_row_is_not_a_sample(tmp_path, header, line):
    path = tmp_path / "t.tsv"
    path.write_text(f"# comment\n{header}\n{line}\n", encoding="utf-8")
    data = load_text_file(path)
    assert data.labels == ["7"] and data.texts == ["a seven"]


def test_text_file_with_a_header_needs_its_fields_on_every_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("id\tlabel\ttext\ns1\t7\ta seven\ns2\t3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3: expected 3 tab-separated fields as in the header "
                                         r"row, found 2 in 's2\\t3'"):
        load_text_file(path)


def test_text_file_label_named_label_after_the_first_line_is_a_sample(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("7\ta seven\nlabel\ttext\n", encoding="utf-8")
    assert load_text_file(path).labels == ["7", "label"]


# --------------------------------------------------------------------------------------------
# encode_labels and pair_modalities_by_label
# --------------------------------------------------------------------------------------------

def test_encode_labels():
    indices, classes = encode_labels(["dog", "cat", "dog", "bird"])
    assert classes == ["bird", "cat", "dog"]
    assert indices.dtype == np.int64 and indices.tolist() == [2, 1, 2, 0]
    indices, classes = encode_labels(["10", "2", "1", 2])
    assert classes == ["1", "2", "10"] and indices.tolist() == [2, 1, 0, 1]
    with pytest.raises(ValueError, match="no labels"):
        encode_labels([])


def make_sources():
    images = np.arange(12 * 2).reshape(12, 2)  # 12 images, labels 0,1,2 four times each
    image_labels = np.array([0, 1, 2] * 4, dtype=np.int64)
    waves = [torch.full((i + 1,), float(i)) for i in range(9)]  # 9 recordings, 3 per class
    wave_labels = ["0", "1", "2"] * 3
    return {"image": (images, image_labels), "audio": (waves, wave_labels)}


def test_pairing_matches_labels_and_uses_items_once():
    sources = make_sources()
    data, labels = pair_modalities_by_label(sources, seed=0)
    assert len(labels) == 9 and sorted(labels) == ["0"] * 3 + ["1"] * 3 + ["2"] * 3
    assert isinstance(data["image"], np.ndarray) and data["image"].shape == (9, 2)
    assert isinstance(data["audio"], list) and len(data["audio"]) == 9
    image_rows = data["image"][:, 0] // 2
    for row, wave, label in zip(image_rows, data["audio"], labels):
        assert str(sources["image"][1][row]) == label
        assert sources["audio"][1][int(wave[0])] == label
    assert len(set(image_rows.tolist())) == 9
    assert len({int(w[0]) for w in data["audio"]}) == 9


def test_pairing_is_deterministic_and_shuffled():
    a_data, a_labels = pair_modalities_by_label(make_sources(), seed=3)
    b_data, b_labels = pair_modalities_by_label(make_sources(), seed=3)
    assert a_labels == b_labels and np.array_equal(a_data["image"], b_data["image"])
    assert all(torch.equal(x, y) for x, y in zip(a_data["audio"], b_data["audio"]))
    c_data, c_labels = pair_modalities_by_label(make_sources(), seed=4)
    assert (c_labels, c_data["image"].tolist()) != (a_labels, a_data["image"].tolist())
    assert a_labels != sorted(a_labels)  # classes are mixed


def test_pairing_per_class_and_tensor_items():
    sources = make_sources()
    sources["image"] = (torch.from_numpy(sources["image"][0]), sources["image"][1])
    data, labels = pair_modalities_by_label(sources, per_class=2)
    assert isinstance(data["image"], torch.Tensor) and data["image"].shape == (6, 2)
    assert sorted(labels) == ["0", "0", "1", "1", "2", "2"]
    with pytest.raises(ValueError, match=r"per_class=4.*class '0'.*'audio': 3.*per_class <= 3"):
        pair_modalities_by_label(make_sources(), per_class=4)
    with pytest.raises(ValueError, match="per_class"):
        pair_modalities_by_label(make_sources(), per_class=0)


def test_pairing_errors():
    sources = make_sources()
    sources["audio"] = (sources["audio"][0][:6], ["0", "1"] * 3)
    with pytest.raises(ValueError, match=r"class '2' is in \['image'\] but absent from \['audio'\]"):
        pair_modalities_by_label(sources)
    with pytest.raises(ValueError, match="non-empty"):
        pair_modalities_by_label({})
    with pytest.raises(ValueError, match=r"'audio'\]: 2 items but 3 labels"):
        pair_modalities_by_label({"audio": ([1, 2], ["a", "b", "c"])})
    with pytest.raises(TypeError, match="pair"):
        pair_modalities_by_label({"audio": [1, 2, 3]})


def test_loaders_feed_a_multimodal_dataset(tmp_path):
    for label in ("0", "1"):
        for take in range(2):
            write_tone(tmp_path / f"{label}_jackson_{take}.wav", seconds=0.05 * (take + 1))
    audio = load_audio_folder(tmp_path)
    images, digit_labels = digits_images(size=8)
    keep = digit_labels < 2
    data, labels = pair_modalities_by_label(
        {"image": (images[keep], digit_labels[keep]), "audio": (audio.waveforms, audio.labels)}, seed=0
    )
    indices, classes = encode_labels(labels)
    assert classes == ["0", "1"]
    ds = MultimodalDataset(data, indices)
    batch = collate_multimodal([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (4, 3, 8, 8) and batch["audio"].shape == (4, 800)
    assert sorted(batch["audio_lengths"].tolist()) == [400, 400, 800, 800]
