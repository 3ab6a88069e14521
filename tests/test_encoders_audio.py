"""Tests for mmcourse.encoders.audio: LogMel, AudioCNN, AudioGRU."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmcourse.data.dataset import collate_multimodal
from mmcourse.encoders.audio import AudioCNN, AudioGRU, LogMel
from mmcourse.encoders.masks import lengths_to_mask

SR = 8000


def _tone(n: int, freq: float = 440.0, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    return 0.5 * torch.sin(2 * math.pi * freq * t) + 0.01 * torch.randn(n, generator=gen)


def _batch(lengths=(4000, 2500, 1000)) -> tuple[torch.Tensor, torch.Tensor]:
    clips = [_tone(n, 300 + 100 * i, seed=i) for i, n in enumerate(lengths)]
    wave = torch.zeros(len(clips), max(lengths))
    for i, c in enumerate(clips):
        wave[i, : len(c)] = c
    return wave, torch.tensor(lengths)


def _encoders():
    torch.manual_seed(0)
    return [AudioCNN(out_dim=32).eval(), AudioGRU(hidden=16, out_dim=24).eval()]


# ---------------------------------------------------------------------------------- LogMel

def test_logmel_shape_and_frame_lengths():
    mel = LogMel()
    wave, lengths = _batch()
    spec = mel(wave)
    assert spec.shape == (3, 40, 1 + 4000 // 80) and spec.dtype == torch.float32
    assert mel.frame_lengths(lengths).tolist() == [51, 32, 13]
    assert torch.isfinite(spec).all()


def test_logmel_pads_with_silence_so_padding_does_not_change_frames():
    mel = LogMel()
    clip = _tone(1234).unsqueeze(0)
    padded = torch.nn.functional.pad(clip, (0, 3000))
    n = int(mel.frame_lengths(torch.tensor([1234]))[0])
    torch.testing.assert_close(mel(clip)[..., :n], mel(padded)[..., :n])


def test_logmel_finds_the_pitch_of_a_tone():
    mel = LogMel(n_mels=40)
    spec = mel(_tone(4000, 1000.0).unsqueeze(0))[0]
    band = int(spec.mean(dim=1).argmax())
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 4000 / 700), 42)[1:-1] / 2595) - 1)
    assert abs(centres[band] - 1000) < 150


def test_logmel_rejects_bad_input():
    mel = LogMel()
    with pytest.raises(ValueError, match="resample"):
        mel(torch.zeros(1, 100), sample_rate=16000)
    mel(torch.zeros(1, 100), sample_rate=8000)  # the right rate is fine
    with pytest.raises(ValueError, match="int16"):
        mel(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(ValueError, match="unsqueeze"):
        mel(torch.zeros(100))
    with pytest.raises(TypeError):
        mel(np.zeros((1, 100), dtype=np.float32))


# ------------------------------------------------------------------------------ encoders

@pytest.mark.parametrize("index", [0, 1], ids=["cnn", "gru"])
def test_encoder_shapes_and_masks(index):
    enc = _encoders()[index]
    wave, lengths = _batch()
    out = enc(wave, lengths=lengths)
    assert out.shape == (3, enc.out_dim) and out.dtype == torch.float32
    feats, mask = enc.sequence(wave, lengths=lengths)
    assert feats.shape[:2] == mask.shape and feats.shape[0] == 3 and feats.shape[2] == enc.out_dim
    assert mask.dtype == torch.bool
    assert mask[:, 0].all()  # every clip has at least one real step
    counts = mask.sum(dim=1)
    assert counts[0] == mask.shape[1] and counts[0] > counts[1] > counts[2]
    # no lengths: nothing is padding
    _, full = enc.sequence(wave)
    assert full.all()


def test_gru_sequence_mask_counts_frames():
    enc = _encoders()[1]
    wave, lengths = _batch()
    _, mask = enc.sequence(wave, lengths=lengths)
    assert mask.sum(dim=1).tolist() == [26, 16, 7]


def test_cnn_sequence_mask_counts_pooled_steps():
    enc = _encoders()[0]
    wave, lengths = _batch()
    feats, mask = enc.sequence(wave, lengths=lengths)
    assert feats.shape[1] == math.ceil(51 / 16)
    assert mask.sum(dim=1).tolist() == [math.ceil(n / 16) for n in (51, 32, 13)]


def test_gru_output_ignores_padding_exactly():
    enc = _encoders()[1]
    clip = _tone(2345)
    outs = []
    for total in (2345, 3000, 6000):
        wave = torch.zeros(1, total)
        wave[0, :2345] = clip
        outs.append(enc(wave, lengths=torch.tensor([2345])))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[0], outs[2], atol=1e-5, rtol=1e-5)


def test_gru_batch_gives_the_same_as_one_clip_at_a_time():
    enc = _encoders()[1]
    wave, lengths = _batch()
    together = enc(wave, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = enc(wave[i:i + 1, :n])
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_cnn_output_nearly_ignores_padding():
    # The pooling skips padded steps; the convolutions near the clip's end still see the silence
    # after it, so compare paddings longer than their receptive field (about 0.5 s).
    enc = _encoders()[0]
    clip = _tone(2345)
    outs = []
    for total in (2345 + 8000, 2345 + 12000, 2345 + 20000):
        wave = torch.zeros(1, total)
        wave[0, :2345] = clip
        outs.append(enc(wave, lengths=torch.tensor([2345])))
    scale = outs[0].abs().max()
    for other in outs[1:]:
        assert (other - outs[0]).abs().max() <= 1e-3 * scale + 1e-5


def test_spec_augment_only_in_training_mode():
    torch.manual_seed(0)
    enc = AudioCNN(out_dim=16, spec_augment=True)
    wave, lengths = _batch()
    enc.eval()
    a, b = enc(wave, lengths=lengths), enc(wave, lengths=lengths)
    torch.testing.assert_close(a, b)  # deterministic in eval mode
    enc.train()
    torch.manual_seed(1)
    c = enc(wave, lengths=lengths)
    torch.manual_seed(2)
    d = enc(wave, lengths=lengths)
    assert not torch.allclose(c, d)  # random masks differ in training mode
    plain = AudioCNN(out_dim=16, spec_augment=False).train()
    plain.load_state_dict(enc.state_dict())
    torch.manual_seed(1)
    e = plain(wave, lengths=lengths)
    torch.manual_seed(2)
    f = plain(wave, lengths=lengths)
    torch.testing.assert_close(e, f)  # without SpecAugment training mode is deterministic


@pytest.mark.parametrize("index", [0, 1], ids=["cnn", "gru"])
def test_encoders_reject_bad_input(index):
    enc = _encoders()[index]
    wave, lengths = _batch()
    with pytest.raises(ValueError, match="8000 Hz"):
        enc(wave, lengths=lengths, sample_rate=16000)
    with pytest.raises(ValueError, match="dtype torch.int16"):
        enc((wave * 32767).to(torch.int16), lengths=lengths)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        enc(wave[0])
    with pytest.raises(ValueError, match="at least one clip"):
        enc(torch.zeros(0, 100))
    with pytest.raises(ValueError, match="lengths"):
        enc(wave, lengths=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="lengths must lie"):
        enc(wave, lengths=torch.tensor([5000, 1, 1]))


@pytest.mark.parametrize("index", [0, 1], ids=["cnn", "gru"])
def test_encoders_train_on_a_collated_batch(index):
    enc = _encoders()[index].train()
    items = [{"audio": _tone(n, seed=n), "label": torch.tensor(n % 2), "present": {"audio": True}}
             for n in (800, 1600, 2400, 1200)]
    batch = collate_multimodal(items)
    head = torch.nn.Linear(enc.out_dim, 2)
    loss = torch.nn.functional.cross_entropy(head(enc(batch["audio"], lengths=batch["audio_lengths"])),
                                             batch["label"])
    loss.backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_lengths_to_mask():
    assert lengths_to_mask(torch.tensor([2, 0, 3]), 3).tolist() == [
        [True, True, False], [False, False, False], [True, True, True]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("index", [0, 1], ids=["cnn", "gru"])
def test_encoders_on_cuda(index):
    enc = _encoders()[index]
    wave, lengths = _batch()
    cpu = enc(wave, lengths=lengths)
    gpu = enc.cuda()(wave.cuda(), lengths=lengths.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("index", [0, 1], ids=["cnn", "gru"])
def test_encoders_on_cpu_device_explicitly(index):
    enc = _encoders()[index].to("cpu")
    wave, lengths = _batch()
    assert enc(wave, lengths=lengths).device.type == "cpu"


def test_wav_round_trip_with_soundfile(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    clip = _tone(3000).numpy().clip(-1, 1)
    path = tmp_path / "clip.wav"
    soundfile.write(path, clip, SR, subtype="PCM_16")
    back, rate = soundfile.read(path, dtype="float32")
    assert rate == SR and back.shape == clip.shape and back.dtype == np.float32
    assert np.abs(back - clip).max() <= 1 / 32768 + 1e-6  # 16-bit quantisation only
    mel = LogMel()
    torch.testing.assert_close(mel(torch.from_numpy(back)[None]), mel(torch.from_numpy(clip)[None]),
                               atol=0.1, rtol=0.01)  # log of tiny powers moves most
