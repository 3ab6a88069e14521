"""Real data a learner can bring to the course, read offline.

* ``digits_images``: scikit-learn's bundled handwritten digits as small RGB images.
* ``load_audio_folder``: a folder of WAV files named like the Free Spoken Digit Dataset.
* ``load_image_folder``: a folder with one sub-folder of images per class (in
  :mod:`mmcourse.data.image_folder`, importable from here).
* ``load_text_file``: a ``label<TAB>text`` file or a CSV with ``label`` and ``text`` columns.

Their labels meet in :mod:`mmcourse.data.pairing`: ``encode_labels`` (string labels -> integer
class indices; importable from here too, as notebook 11 does) and ``pair_modalities_by_label``
(multimodal samples from unpaired unimodal sources, the way AV-MNIST is made).

Everything returns plain numpy arrays / tensors / lists, ready for ``MultimodalDataset``::

    images, digit_labels = digits_images(size=32)
    audio = load_audio_folder("free-spoken-digit-dataset/recordings", sample_rate=8000)
    data, labels = pair_modalities_by_label(
        {"image": (images, digit_labels), "audio": (audio.waveforms, audio.labels)}, seed=0
    )
    labels, classes = encode_labels(labels)
    dataset = MultimodalDataset(data, labels)
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmcourse.checks import check_int
# load_image_folder: notebook 11 imports it from here, beside the audio and text loaders
from mmcourse.data.image_folder import IMAGE_EXTENSIONS, ImageFolderData, load_image_folder  # noqa: F401
# encode_labels: notebook 11 imports it from here, with the loaders whose labels it encodes
from mmcourse.data.pairing import natural_key, encode_labels  # noqa: F401

#: ``{label}_{speaker}_{n}.wav``, e.g. ``7_jackson_32.wav``.
AUDIO_NAME_PATTERN = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>.+)_(?P<n>\d+)$")
AUDIO_NAME_HELP = "{label}_{speaker}_{n}.wav, e.g. 7_jackson_32.wav"

# --------------------------------------------------------------------------------------------
# Images: scikit-learn's digits
# --------------------------------------------------------------------------------------------

def digits_images(
    size: int = 32,
    colour: Sequence[int] | None = None,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Real handwritten digits as RGB images: scikit-learn's ``load_digits`` (no download).

    There are 1797 digits (0-9, about 180 each) written by 43 people, scanned and reduced to
    8x8 grey levels 0..16 (the UCI "Optical Recognition of Handwritten Digits" data). They are
    upscaled here with bilinear interpolation and mapped to 0..255.

    Args:
        size: the side of the output images in pixels (32 -> 32x32).
        colour: optional RGB colour ``(r, g, b)`` with values 0..255 for the strokes, on black;
            ``None`` gives grey images (the three channels equal).
        seed: the samples come in an order shuffled with this seed; ``None`` keeps
            scikit-learn's order.

    Returns:
        ``(images, labels)``: uint8 array ``(1797, 3, size, size)`` and int64 array ``(1797,)``.

    Example::

        >>> images, labels = digits_images(size=16, colour=(255, 0, 0))
        >>> images.shape, images.dtype, labels[:3].dtype
        ((1797, 3, 16, 16), dtype('uint8'), dtype('int64'))
    """
    from sklearn.datasets import load_digits

    check_int(size, "size", unit="pixels")
    if colour is None:
        tint = np.array([255.0, 255.0, 255.0])
    else:
        tint = np.asarray(colour, dtype=float)
        if tint.shape != (3,) or (tint < 0).any() or (tint > 255).any():
            raise ValueError(f"colour must be three numbers (r, g, b) in 0..255, got {colour!r}")

    digits = load_digits()
    grey = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8), 0..1
    if size != 8:
        grey = F.interpolate(grey, size=(int(size), int(size)), mode="bilinear", align_corners=False)
    grey = grey.clamp(0, 1).numpy()
    rgb = grey * tint.reshape(1, 3, 1, 1).astype(np.float32)  # (N, 3, size, size)
    images = np.rint(rgb).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)

    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(labels))
        images, labels = images[order], labels[order]
    return np.ascontiguousarray(images), labels


# --------------------------------------------------------------------------------------------
# Audio: a folder of WAV files
# --------------------------------------------------------------------------------------------

@dataclass
class AudioFolder:
    """What ``load_audio_folder`` returns: one entry per file, in the same order in every list."""

    waveforms: list[torch.Tensor]  # float32 1-D (mono), values in -1..1
    labels: list[str]  # from the file name, e.g. "7"
    speakers: list[str]  # from the file name, e.g. "jackson"
    sample_rate: int  # shared by every waveform
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.waveforms)


def wav_declared_frames(path: str | Path) -> int | None:
    """The number of frames a RIFF/WAVE file's header announces (its ``data`` chunk size
    divided by the bytes per frame), or None when the header does not say (not a plain RIFF
    WAV, or a size left at 0 or 0xFFFFFFFF by a streaming writer).

    ``soundfile`` quietly reads only the frames a truncated file still holds; comparing with
    this number is how :func:`load_audio_folder` notices the rest is gone.
    """
    import struct

    with open(path, "rb") as fh:
        if fh.read(4) != b"RIFF" or not fh.read(4) or fh.read(4) != b"WAVE":
            return None
        block_align = None
        while True:
            header = fh.read(8)
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = fh.read(size)
                if len(fmt) < 14:
                    return None
                block_align = struct.unpack("<H", fmt[12:14])[0]
                fh.seek(size % 2, 1)
            elif chunk == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                fh.seek(size + size % 2, 1)  # chunks are padded to an even size


def load_audio_folder(folder: str | Path, sample_rate: int | None = None) -> AudioFolder:
    """Read every ``.wav`` file of a folder named ``{label}_{speaker}_{n}.wav``.

    That is the naming of the Free Spoken Digit Dataset (``7_jackson_32.wav``: the digit 7,
    said by jackson, take 32). Files are read with ``soundfile``; stereo is averaged to mono.
    A file is refused (a ``ValueError`` naming it) when it is empty, truncated (fewer frames
    than its header announces, see :func:`wav_declared_frames`), or holds samples that are not
    finite or lie outside [-1, 1] (possible in 32/64-bit float WAVs, which are not clipped).

    Args:
        folder: the folder holding the files (sub-folders are not searched).
        sample_rate: the rate (Hz) to return; files at another rate are resampled with
            ``torchaudio.functional.resample``. ``None``: keep the files' rate, which must
            then be the same for every file.

    Returns:
        An ``AudioFolder`` with ``waveforms`` (float32 1-D tensors), ``labels``, ``speakers``,
        ``sample_rate`` and ``files``, sorted by file name (with 2 before 10).

    Example::

        audio = load_audio_folder("recordings", sample_rate=8000)
        audio.waveforms[0].shape, audio.labels[0], audio.speakers[0]   # (T,), '0', 'george'
    """
    import soundfile

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder not found: {folder} (expected a folder of .wav files)")
    check_int(sample_rate, "sample_rate", allow_none=True, unit="Hz")

    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".wav"),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise FileNotFoundError(f"no .wav files in {folder}: expected files named {AUDIO_NAME_HELP}")

    waveforms, labels, speakers, rates = [], [], [], []
    for path in files:
        match = AUDIO_NAME_PATTERN.match(path.stem)
        if match is None:
            raise ValueError(f"audio file name {path.name!r} does not follow the pattern {AUDIO_NAME_HELP}")
        try:
            samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises several kinds for broken files
            raise ValueError(f"could not read audio file {path}: {error}") from error
        if samples.shape[0] == 0:
            raise ValueError(f"audio file {path} is empty (0 samples)")
        declared = wav_declared_frames(path)
        if declared is not None and declared > samples.shape[0]:
            raise ValueError(f"audio file {path} is truncated: its header announces {declared} "
                             f"frames, the file holds {samples.shape[0]}; copy it again or "
                             f"remove it")
        finite = np.isfinite(samples)
        if not finite.all():
            raise ValueError(f"audio file {path} holds {int((~finite).sum())} non-finite samples "
                             f"(NaN or infinity, first at frame {int(np.argwhere(~finite)[0, 0])}); "
                             f"expected samples in [-1, 1]")
        peak = float(np.abs(samples).max())
        if peak > 1.0:
            raise ValueError(f"audio file {path} holds samples up to {peak:.3g} in magnitude; "
                             f"expected floats in [-1, 1] (rescale it, e.g. divide by its peak)")
        waveforms.append(torch.from_numpy(samples.mean(axis=1).astype(np.float32)))  # (T,), mono
        labels.append(match["label"])
        speakers.append(match["speaker"])
        rates.append(int(rate))

    if sample_rate is None:
        found = sorted(set(rates))
        if len(found) > 1:
            examples = ", ".join(f"{rate} Hz ({files[rates.index(rate)].name})" for rate in found)
            raise ValueError(
                f"the files in {folder} have different sample rates: {examples}; pass "
                f"sample_rate=... to resample them all to one rate"
            )
        sample_rate = found[0]
    else:
        import torchaudio.functional

        for i, rate in enumerate(rates):
            if rate != sample_rate:
                waveforms[i] = torchaudio.functional.resample(waveforms[i], rate, int(sample_rate))

    return AudioFolder(
        waveforms=waveforms, labels=labels, speakers=speakers, sample_rate=int(sample_rate), files=files
    )


# --------------------------------------------------------------------------------------------
# Text: label<TAB>text lines, or a CSV
# --------------------------------------------------------------------------------------------

@dataclass
class TextFileData:
    """What ``load_text_file`` returns: ``texts[i]`` has label ``labels[i]``."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def load_text_file(path: str | Path) -> TextFileData:
    """Read labelled texts from a UTF-8 file.

    Two formats:

    * ``.csv``: a header row with (at least) the columns ``label`` and ``text``;
    * anything else: one sample per line, ``label<TAB>text``. Blank lines and lines starting
      with ``#`` are skipped. **Header rule**: when the first of the other lines, split at its
      tabs, has fields named ``label`` and ``text`` (in any order and case, among other
      columns such as ``id``), it is a header, not a sample: every following line must then
      have as many tab-separated fields, and the label and text are read from those two
      columns. Without such a header a line is split at its first tab, so a text may hold tabs.

    Surrounding whitespace is removed from labels and texts.

    Args:
        path: the file.

    Returns:
        A ``TextFileData`` with ``texts`` and ``labels`` (both lists of str).

    Example::

        captions = load_text_file("captions.tsv")   # lines like "7\\ta seven with a long stem"
        labels, classes = encode_labels(captions.labels)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        content = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not valid UTF-8 text: {error}") from error

    texts: list[str] = []
    labels: list[str] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(content))
        columns = reader.fieldnames or []
        missing = [name for name in ("label", "text") if name not in columns]
        if missing:
            raise ValueError(
                f"{path}: the CSV header must contain the columns 'label' and 'text', "
                f"missing {missing} (found {columns})"
            )
        for row in reader:
            line_number = reader.line_num
            label, text = (row["label"] or "").strip(), (row["text"] or "").strip()
            if not label:
                raise ValueError(f"{path}, line {line_number}: empty label (row {row})")
            if not text:
                raise ValueError(f"{path}, line {line_number}: empty text for label {label!r}")
            labels.append(label)
            texts.append(text)
    else:
        columns = None  # (label column, text column, field count) once a header is seen
        for line_number, line in enumerate(content.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = [part.strip() for part in line.split("\t")]
            names = [name.lower() for name in fields]
            if not texts and columns is None and "label" in names and "text" in names:
                columns = (names.index("label"), names.index("text"), len(fields))
                continue
            if "\t" not in line:
                raise ValueError(
                    f"{path}, line {line_number}: expected 'label<TAB>text', found no tab in {line!r}"
                )
            if columns is None:
                label, text = (part.strip() for part in line.split("\t", 1))
            elif len(fields) != columns[2]:
                raise ValueError(
                    f"{path}, line {line_number}: expected {columns[2]} tab-separated fields as in "
                    f"the header row, found {len(fields)} in {line!r}"
                )
            else:
                label, text = fields[columns[0]], fields[columns[1]]
            if not label:
                raise ValueError(f"{path}, line {line_number}: empty label in {line!r}")
            if not text:
                raise ValueError(f"{path}, line {line_number}: empty text for label {label!r}")
            labels.append(label)
            texts.append(text)

    if not texts:
        raise ValueError(f"{path} holds no samples (expected lines 'label<TAB>text' or CSV rows)")
    return TextFileData(texts=texts, labels=labels)
