"""Image encoders: shapes, dtypes, the two views, devices, bad input, and the offline weights path.

No test touches the network: the pretrained path is tested with the download replaced by a stub
that raises the error an offline machine gives.
"""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from mmcourse.encoders.image import (IMAGENET_MEAN, ImageCNN, ResNetImageEncoder,
                                     WeightsUnavailableError, load_resnet18)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def resnet() -> ResNetImageEncoder:
    torch.manual_seed(0)
    return ResNetImageEncoder().eval()


# ---------------------------------------------------------------- ImageCNN

@pytest.mark.parametrize("device", DEVICES)
def test_cnn_pooled_and_sequence_shapes(device):
    torch.manual_seed(0)
    enc = ImageCNN().to(device).eval()
    x = torch.rand(5, 3, 32, 32, device=device)
    features = enc(x)
    assert features.shape == (5, 128) and features.dtype == torch.float32
    assert features.device.type == device
    patches, mask = enc.sequence(x)
    assert patches.shape == (5, 16, 128) and patches.dtype == torch.float32
    assert mask.shape == (5, 16) and mask.dtype == torch.bool and bool(mask.all())
    assert mask.device.type == device
    assert enc.out_dim == 128


def test_cnn_pooled_view_is_the_max_over_patches():
    torch.manual_seed(0)
    enc = ImageCNN(channels=(8, 16), out_dim=12).eval()
    x = torch.rand(3, 3, 32, 32)
    patches, _ = enc.sequence(x)
    assert patches.shape == (3, 64, 12)  # two blocks: 32 -> 8, 8 * 8 patches
    torch.testing.assert_close(enc(x), patches.amax(dim=1))
    avg = ImageCNN(channels=(8, 16), out_dim=12, pool="avg").eval()
    avg.load_state_dict(enc.state_dict())
    torch.testing.assert_close(avg(x), patches.mean(dim=1))


def test_cnn_out_dim_channels_and_lengths_argument():
    enc = ImageCNN(in_channels=1, channels=(4,), out_dim=7).eval()
    x = torch.rand(2, 1, 8, 8)
    assert enc(x).shape == (2, 7)
    assert enc(x, lengths=torch.tensor([8, 8])).shape == (2, 7)  # accepted and ignored
    assert enc.sequence(x)[0].shape == (2, 16, 7)


def test_cnn_smallest_input_keeps_one_patch():
    enc = ImageCNN().eval()
    patches, mask = enc.sequence(torch.rand(1, 3, 8, 8))
    assert patches.shape == (1, 1, 128) and mask.shape == (1, 1)


def test_cnn_trains():
    torch.manual_seed(0)
    enc = ImageCNN(channels=(8, 16), out_dim=16)
    head = torch.nn.Linear(16, 2)
    x = torch.rand(8, 3, 16, 16)
    y = torch.tensor([0, 1] * 4)
    x[y == 1, 0] += 1.0  # class 1 is redder
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-2)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(head(enc(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), r"uint8.*x\.float\(\) / 255"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.int64), "float tensor"),
    (torch.rand(3, 32, 32), r"4-D.*unsqueeze\(0\)"),
    (torch.rand(2, 1, 32, 32), "3 channels"),
    (torch.rand(2, 32, 32, 3), r"permute\(0, 3, 1, 2\)"),
    (torch.rand(2, 3, 4, 32), "at least 8x8"),
])
def test_cnn_bad_input_is_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        ImageCNN()(bad)


def test_cnn_bad_input_type_and_arguments():
    with pytest.raises(ValueError, match="got a ndarray"):
        ImageCNN()(torch.rand(1, 3, 8, 8).numpy())
    with pytest.raises(ValueError, match="positive"):
        ImageCNN(channels=())
    with pytest.raises(ValueError, match="positive"):
        ImageCNN(out_dim=0)
    with pytest.raises(ValueError, match="'max' or 'avg'"):
        ImageCNN(pool="sum")


# ---------------------------------------------------------------- ResNetImageEncoder

def test_resnet_from_scratch_is_torchvisions_resnet18(resnet):
    assert isinstance(resnet.backbone, torchvision.models.ResNet)
    assert isinstance(resnet.backbone.fc, torch.nn.Identity)
    assert resnet.backbone.conv1.kernel_size == (3, 3) and resnet.backbone.conv1.stride == (1, 1)
    assert isinstance(resnet.backbone.maxpool, torch.nn.Identity)
    assert not resnet.pretrained
    n_params = sum(p.numel() for p in resnet.parameters())
    assert 11_000_000 < n_params < 11_300_000  # resnet18 minus its 513k-parameter classifier


def test_resnet_shapes_small_stem(resnet):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = resnet(x)
        patches, mask = resnet.sequence(x)
    assert resnet.out_dim == 512
    assert features.shape == (2, 512) and features.dtype == torch.float32
    assert patches.shape == (2, 16, 512) and mask.shape == (2, 16) and bool(mask.all())
    torch.testing.assert_close(features, patches.mean(dim=1), atol=1e-5, rtol=1e-5)


def test_resnet_imagenet_stem_and_projection():
    torch.manual_seed(0)
    enc = ResNetImageEncoder(out_dim=64, small_input=False).eval()
    assert enc.backbone.conv1.kernel_size == (7, 7)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert enc(x).shape == (2, 64)
        patches, mask = enc.sequence(x)
    assert patches.shape == (2, 4, 64) and mask.shape == (2, 4)  # 64 / 32 = 2, 2 * 2 patches
    with pytest.raises(ValueError, match="at least 32x32"):
        enc(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="out_dim"):
        ResNetImageEncoder(out_dim=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resnet_on_cuda():
    enc = ResNetImageEncoder(out_dim=32).cuda().eval()
    with torch.no_grad():
        features = enc(torch.rand(2, 3, 32, 32, device="cuda"))
        patches, mask = enc.sequence(torch.rand(2, 3, 32, 32, device="cuda"))
    assert features.shape == (2, 32) and features.device.type == "cuda"
    assert patches.device.type == "cuda" and mask.device.type == "cuda"


def test_resnet_bad_input(resnet):
    with pytest.raises(ValueError, match="uint8"):
        resnet(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        resnet(torch.rand(1, 4, 32, 32))


def test_bad_weights_name_is_a_value_error():
    with pytest.raises(ValueError, match="weights must be None, 'DEFAULT'"):
        load_resnet18("IMAGENET_SUPER")


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -2] Name or service not known"),
                                   OSError("Network is unreachable")])
def test_pretrained_offline_is_a_clear_error(monkeypatch, error):
    calls = []

    def offline(self, *args, **kwargs):
        calls.append(self)
        raise error

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match=r"offline.*weights=None") as info:
        ResNetImageEncoder(weights="DEFAULT")
    assert info.value.__cause__ is error
    assert calls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]


def test_pretrained_path_loads_weights_and_normalises(monkeypatch):
    """With a local stand-in for the download: the weights land in the backbone (except the new
    3x3 stem) and inputs are normalised with the ImageNet statistics."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict",
                        lambda self, *a, **k: reference)
    enc = ResNetImageEncoder(weights="DEFAULT").eval()
    assert enc.pretrained
    torch.testing.assert_close(enc.backbone.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    assert enc.backbone.conv1.weight.shape == (64, 3, 3, 3)  # the small stem is new
    full = ResNetImageEncoder(weights="DEFAULT", small_input=False).eval()
    torch.testing.assert_close(full.backbone.conv1.weight, reference["conv1.weight"])
    # an image equal to the ImageNet mean becomes all zeros after normalisation
    seen = {}
    enc.backbone.conv1.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        enc(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32).clone())
    assert seen["x"].abs().max() < 1e-6
