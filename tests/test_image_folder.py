"""mmcourse.data.image_folder: every kind of image file becomes the 8-bit RGB a viewer shows."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcourse.data.image_folder import _to_rgb, load_image_folder


def one_image(tmp_path: Path, image: Image.Image, name: str = "x.png", **save) -> Path:
    """A folder with one class holding ``image``; returns the folder."""
    (tmp_path / "c").mkdir()
    image.save(tmp_path / "c" / name, **save)
    return tmp_path


def test_16_bit_png_keeps_its_grey_levels(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0, 257, ..., 65535
    folder = one_image(tmp_path, Image.fromarray(ramp))
    assert Image.open(folder / "c" / "x.png").mode.startswith("I")  # really 16 bits on disk
    pixels = load_image_folder(folder).images[0]
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 16, 16)
    assert np.array_equal(pixels[0], np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert np.array_equal(pixels[0], pixels[2])


def test_32_bit_integer_pixels_outside_16_bits_are_refused():
    # Pillow cannot write such a PNG; an older one opened 16-bit PNGs in this mode (I)
    image = Image.fromarray(np.full((4, 4), 70000, dtype=np.int32))
    with pytest.raises(ValueError, match=r"x\.png holds I values from 70000 to 70000; expected "
                                         r"16-bit grey levels 0\.\.65535"):
        _to_rgb(image, Path("x.png"), (0, 0, 0))
    assert _to_rgb(Image.fromarray(np.full((1, 1), 65535, dtype=np.int32)), Path("x.png"),
                   (0, 0, 0)).getpixel((0, 0)) == (255, 255, 255)


def test_palette_image_gives_its_colours(tmp_path):
    rgb = Image.new("RGB", (4, 4), (0, 128, 255))
    folder = one_image(tmp_path, rgb.convert("P", palette=Image.Palette.ADAPTIVE))
    assert Image.open(folder / "c" / "x.png").mode == "P"
    assert load_image_folder(folder).images[0, :, 0, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("background, expected", [((0, 0, 0), [128, 0, 0]),
                                                  ((255, 255, 255), [255, 127, 127])])
def test_rgba_is_composited_over_the_background(tmp_path, background, expected):
    folder = one_image(tmp_path, Image.new("RGBA", (4, 4), (255, 0, 0, 128)))
    pixels = load_image_folder(folder, background=background).images[0]
    assert pixels[:, 0, 0].tolist() == expected


def test_transparent_palette_colour_shows_the_background(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 1
    folder = one_image(tmp_path, image, transparency=1)
    pixels = load_image_folder(folder, background=(0, 0, 255)).images[0]
    assert pixels[:, 0, 0].tolist() == [0, 0, 255]


def test_exif_rotation_is_applied(tmp_path):
    stored = np.zeros((8, 16, 3), dtype=np.uint8)  # 16 wide, 8 tall, left half white
    stored[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    folder = one_image(tmp_path, Image.fromarray(stored), "x.jpg", exif=exif.tobytes(), quality=95)
    pixels = load_image_folder(folder).images[0]
    assert pixels.shape == (3, 16, 8)  # shown upright: 8 wide, 16 tall
    assert pixels[0, :8].mean() > 200 and pixels[0, 8:].mean() < 50  # white half on top


@pytest.mark.parametrize("background", [(0, 0), (0, 0, 256), "black"])
def test_bad_background_is_refused(tmp_path, background):
    folder = one_image(tmp_path, Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match=re.escape(f"background must be three integers (r, g, b) "
                                                   f"in 0..255, got {background!r}")):
        load_image_folder(folder, background=background)


def test_plain_rgb_images_are_unchanged(tmp_path):
    colours = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    folder = one_image(tmp_path, Image.fromarray(colours))
    assert np.array_equal(load_image_folder(folder).images[0], colours.transpose(2, 0, 1))
