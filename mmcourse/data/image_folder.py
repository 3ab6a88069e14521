"""Images a learner brings, read as a viewer shows them: ``load_image_folder``.

The layout is torchvision's ``ImageFolder`` (``folder/<class>/<image>.png``); every image becomes
8-bit RGB (N, 3, H, W) after its EXIF rotation, with 16-bit grey levels scaled (not clipped),
palettes expanded and transparency composited over a background colour. Importable from
:mod:`mmcourse.data.adapters` too, beside the audio and text loaders.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcourse.checks import check_int
from mmcourse.data.pairing import natural_key

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class ImageFolderData:
    """What ``load_image_folder`` returns."""

    images: np.ndarray  # uint8 (N, 3, H, W)
    labels: np.ndarray  # int64 (N,), indices into classes
    classes: list[str]  # class (sub-folder) names, sorted
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


class _UnsupportedImage(ValueError):
    """An image Pillow reads but whose pixels the course cannot turn into 8-bit RGB."""


def _to_rgb(image, path: Path, background: tuple[int, int, int]):
    """An opened Pillow image as 8-bit RGB, displayed the way a viewer shows it.

    * EXIF orientation is applied (a phone photo taken upright comes out upright);
    * 16-bit and 32-bit integer grey levels (modes ``I;16*``, ``I``: 16-bit PNGs) are scaled
      from 0..65535 to 0..255, not clipped (which would leave two grey levels);
    * transparency (RGBA, LA, or a palette with a transparent colour) is composited over
      ``background``; palettes are expanded to their colours.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # I;16, I;16B, I;16L, I (32-bit, how some PNGs of 16 bits open)
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise _UnsupportedImage(f"image {path} holds {image.mode} values from {values.min()} to "
                             f"{values.max()}; expected 16-bit grey levels 0..65535")
        grey = np.rint(values / 257.0).astype(np.uint8)  # 65535 / 257 = 255
        return Image.fromarray(grey).convert("RGB")
    if image.mode == "F":
        raise _UnsupportedImage(f"image {path} holds floating-point pixels (mode F); expected 8- or "
                         f"16-bit integer images")
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image).convert("RGB")
    return image.convert("RGB")


def load_image_folder(folder: str | Path, size: int | None = None,
                      background: Sequence[int] = (0, 0, 0)) -> ImageFolderData:
    """Read images laid out as ``folder/<class_name>/<image>.png|jpg|jpeg|bmp``.

    The same layout as torchvision's ``ImageFolder``: one sub-folder per class, classes sorted
    by name (class index 0 is the first name), images searched recursively inside each class
    folder. Images are converted to 8-bit RGB with Pillow as a viewer shows them: rotated by
    their EXIF orientation, 16-bit grey levels scaled to 0..255, palettes expanded, and
    transparent pixels (RGBA, grey + alpha, a palette's transparent colour) composited over
    ``background``.

    Args:
        folder: the root folder.
        size: resize every image to ``size x size`` (bilinear). ``None``: keep the sizes, which
            must then all be the same.
        background: the RGB colour ``(r, g, b)``, 0..255, behind transparent pixels (black by
            default, like the course's images of a missing object).

    Returns:
        An ``ImageFolderData`` with ``images`` (uint8 ``(N, 3, H, W)``), ``labels`` (int64
        ``(N,)``), ``classes`` and ``files``.

    Example::

        photos = load_image_folder("my_photos", size=32)
        photos.images.shape, photos.classes   # (N, 3, 32, 32), ['cat', 'dog']
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    check_int(size, "size", allow_none=True, unit="pixels")
    fill = tuple(background) if isinstance(background, Sequence) else ()
    if len(fill) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in fill):
        raise ValueError(f"background must be three integers (r, g, b) in 0..255, got {background!r}")

    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" (found {len(loose)} images directly in it: move them into class folders)" if loose else ""
        raise ValueError(
            f"no class folders in {folder}: expected one sub-folder per class, "
            f"e.g. {folder}/cat/1.png and {folder}/dog/2.png{hint}"
        )

    images, labels, files = [], [], []
    first_size: tuple[tuple[int, int], Path] | None = None
    for class_index, class_dir in enumerate(class_dirs):
        class_files = sorted(
            (p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: natural_key(str(p.relative_to(class_dir))),
        )
        if not class_files:
            raise ValueError(
                f"class folder {class_dir} holds no images (expected files ending in "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        for path in class_files:
            try:
                with Image.open(path) as opened:
                    image = _to_rgb(opened, path, tuple(int(v) for v in fill))
            except _UnsupportedImage:
                raise
            except Exception as error:  # Pillow raises several kinds for broken files
                raise ValueError(f"could not read image {path}: {error}") from error
            if size is not None:
                image = image.resize((int(size), int(size)), Image.Resampling.BILINEAR)
            elif first_size is None:
                first_size = (image.size, path)
            elif image.size != first_size[0]:
                (w0, h0), path0 = first_size
                w1, h1 = image.size
                raise ValueError(
                    f"images have different sizes: {path0} is {w0}x{h0}, {path} is {w1}x{h1} "
                    f"(width x height); pass size=... to resize them all"
                )
            images.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))  # (3, H, W)
            labels.append(class_index)
            files.append(path)

    return ImageFolderData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=[p.name for p in class_dirs],
        files=files,
    )
