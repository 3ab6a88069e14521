"""Image encoders: a small CNN written out in full, and torchvision's ResNet-18 as a backbone.

Both follow the course's encoder interface (see :mod:`mmcourse.encoders`):

* ``encoder(x) -> (B, out_dim)`` float: one feature vector per image;
* ``encoder.sequence(x) -> (patches (B, H' * W', out_dim), mask (B, H' * W') bool)``: the last
  feature map read as a sequence of patches, for attention fusion (the mask is all True: an image
  has no padding);
* ``encoder.out_dim``.

``x`` is a float batch (B, 3, H, W) with values in [0, 1], as ``CourseSplit.as_dataset`` gives it.

    >>> import torch
    >>> enc = ImageCNN()
    >>> enc(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 128])
"""
from __future__ import annotations

import urllib.error
from typing import Sequence

import torch
import torch.nn as nn
import torchvision

from mmcourse.checks import check_int

#: ImageNet's per-channel mean and standard deviation (RGB, on the [0, 1] scale): the statistics
#: torchvision's pretrained weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but could not be loaded (no network, no cached copy)."""


def check_image_batch(x: torch.Tensor, in_channels: int, min_size: int, who: str) -> None:
    """Raise a ValueError unless ``x`` is a float tensor (B, in_channels, H, W), H, W >= min_size."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who} expects a float tensor (B, {in_channels}, H, W), "
                         f"got a {type(x).__name__}")
    if x.dtype == torch.uint8:
        raise ValueError(f"{who} expects float pixels in [0, 1], got a uint8 tensor: convert it "
                         f"with x.float() / 255")
    if not x.is_floating_point():
        raise ValueError(f"{who} expects a float tensor, got dtype {x.dtype}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{who} expects a 4-D batch (B, {in_channels}, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        hint = " (channels last? use x.permute(0, 3, 1, 2))" if x.shape[-1] == in_channels else ""
        raise ValueError(f"{who} expects {in_channels} channels in dim 1, got shape "
                         f"{tuple(x.shape)}{hint}")
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f"{who} needs images of at least {min_size}x{min_size} pixels, got "
                         f"{x.shape[2]}x{x.shape[3]}")


def _as_patches(feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D, H, W) -> patches (B, H * W, D) in row-major order, and an all-True mask (B, H * W)."""
    patches = feature_map.flatten(2).transpose(1, 2)
    mask = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
    return patches, mask


class ImageCNN(nn.Module):
    """A small CNN: blocks of conv 3x3 -> BatchNorm -> ReLU -> max-pool 2x2, then a 1x1 conv to
    ``out_dim`` channels and global average pooling.

    Args:
        in_channels: channels of the input images (3 for RGB).
        channels: output channels of each block; each block halves the height and width, so a
            32x32 image becomes a 4x4 map after three blocks.
        out_dim: the feature size D.

    Input: float (B, in_channels, H, W) with H, W >= 8. ``forward`` returns float (B, out_dim);
    ``sequence`` returns the last map as patches (B, H' * W', out_dim) and an all-True mask
    (B, H' * W'), with H' = H // 2**len(channels) (at least 1).
    """

    MIN_SIZE = 8

    def __init__(self, in_channels: int = 3, channels: Sequence[int] = (32, 64, 128),
                 out_dim: int = 128, pool: str = "max"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        channels = tuple(int(c) for c in channels)
        check_int(in_channels, "in_channels")
        check_int(out_dim, "out_dim")
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be one or more positive integers, got {channels}")
        self.in_channels, self.out_dim = in_channels, out_dim
        layers: list[nn.Module] = []
        previous = in_channels
        for c in channels:
            layers += [nn.Conv2d(previous, c, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       # ceil_mode keeps a 1x1 map from vanishing on small inputs
                       nn.MaxPool2d(2, ceil_mode=True)]
            previous = c
        # a 1x1 convolution maps the last block to out_dim channels: one D-vector per position
        layers += [nn.Conv2d(previous, out_dim, kernel_size=1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.pool_kind = pool

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, out_dim, H', W')."""
        check_image_batch(x, self.in_channels, self.MIN_SIZE, type(self).__name__)
        return self.features(x)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features (B, out_dim). ``lengths`` is accepted for the common interface and
        ignored (images are never padded)."""
        return self.pool(self.feature_map(x)).flatten(1)

    def sequence(self, x: torch.Tensor,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (B, H' * W', out_dim) and an all-True mask (B, H' * W')."""
        return _as_patches(self.feature_map(x))


class ResNetImageEncoder(nn.Module):
    """torchvision's ResNet-18, without its classifier, as an image encoder.

    Args:
        weights: ``None`` (default) builds the network with random weights, to train from
            scratch: no download. ``"DEFAULT"`` (or a ``torchvision.models.ResNet18_Weights``
            member) loads torchvision's ImageNet weights, which downloads them the first time
            (about 45 MB, cached in ``~/.cache/torch/hub``); offline and without a cached copy this
            raises :class:`WeightsUnavailableError`. With pretrained weights the input is
            normalised with the ImageNet mean and std inside ``forward``, as the weights expect.
        out_dim: the feature size; ``None`` keeps ResNet-18's 512, another value adds a linear
            projection 512 -> out_dim (applied to both views).
        small_input: adapt the stem to 32x32 images, as is standard for CIFAR-sized inputs: the
            first convolution becomes 3x3 with stride 1 (instead of 7x7 with stride 2) and the
            max-pool is removed, so a 32x32 image keeps a 4x4 map in layer4 instead of shrinking
            to 1x1 after the stem's 4x downsampling. With pretrained weights the new 3x3 first
            convolution starts from random weights; every other layer keeps its ImageNet weights.

    Input: float (B, 3, H, W) in [0, 1], H, W >= 8 (>= 32 with ``small_input=False``).
    ``forward`` gives (B, out_dim); ``sequence`` gives layer4's map as patches
    (B, H' * W', out_dim) with an all-True mask (H' = H / 8 with the small stem, H / 32 without).
    """

    def __init__(self, weights: str | torchvision.models.WeightsEnum | None = None,
                 out_dim: int | None = None, small_input: bool = True):
        super().__init__()
        self.pretrained = weights is not None
        backbone = load_resnet18(weights)
        if small_input:
            backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
            backbone.maxpool = nn.Identity()
        backbone.fc = nn.Identity()  # the ImageNet classifier goes; the features stay
        self.backbone, self.small_input = backbone, small_input
        self.min_size = 8 if small_input else 32
        width = 512
        check_int(out_dim, "out_dim", allow_none=True)
        self.out_dim = width if out_dim is None else int(out_dim)
        self.project = nn.Identity() if self.out_dim == width else nn.Linear(width, self.out_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """layer4's output (B, 512, H', W'), before pooling and projection."""
        check_image_batch(x, 3, self.min_size, type(self).__name__)
        if self.pretrained:
            x = (x - self.mean) / self.std
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features (B, out_dim); ``lengths`` is ignored (images are never padded)."""
        return self.project(self.backbone.avgpool(self.feature_map(x)).flatten(1))

    def sequence(self, x: torch.Tensor,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """layer4's patches (B, H' * W', out_dim) and an all-True mask (B, H' * W')."""
        patches, mask = _as_patches(self.feature_map(x))
        return self.project(patches), mask


def load_resnet18(weights: str | torchvision.models.WeightsEnum | None = None) -> nn.Module:
    """``torchvision.models.resnet18(weights=weights)``, with a clear error when pretrained
    weights cannot be downloaded (no network and no cached copy).

    Raises:
        WeightsUnavailableError: the download failed (the original error is chained).
        ValueError: ``weights`` names no ResNet-18 weights.
    """
    if weights is None:
        return torchvision.models.resnet18(weights=None)
    try:
        weights = torchvision.models.ResNet18_Weights.verify(weights)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"weights must be None, 'DEFAULT', 'IMAGENET1K_V1' or a "
                         f"torchvision.models.ResNet18_Weights member, got {weights!r}") from err
    try:
        return torchvision.models.resnet18(weights=weights)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(
            f"could not load the pretrained ResNet-18 weights {weights} from {weights.url} "
            f"({type(err).__name__}: {err}). This machine seems to be offline and has no cached "
            f"copy in {torch.hub.get_dir()}/checkpoints. Use weights=None to train from scratch, "
            f"or download the file once on a machine with internet access.") from err
