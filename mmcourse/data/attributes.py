"""What the course's objects can be: their attributes, their modalities and how good each is.

Every sample of the course dataset (:mod:`mmcourse.data.course`) is one object with four
attributes (``ATTRIBUTES``: shape, colour, size, position), seen, heard and described in three
modalities (``MODALITY_NAMES``), each at one of its ``QUALITY_LEVELS``. The label is the shape
(``SHAPES``, or ``DIGITS`` when handwritten digits stand in for the shapes); each class has its
own call, a melody (``MELODIES``).
"""
from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven")
COLOURS = {  # RGB in 0..1; picked to stay apart for colour-blind viewers too (blue/orange/...)
    "red": (0.84, 0.15, 0.16),
    "orange": (0.96, 0.55, 0.10),
    "yellow": (0.95, 0.85, 0.20),
    "green": (0.20, 0.65, 0.30),
    "blue": (0.15, 0.40, 0.85),
    "purple": (0.60, 0.30, 0.75),
}
SIZES = ("small", "medium", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "centre")
ATTRIBUTES = ("shape", "colour", "size", "position")

#: The modalities of every course sample (any other names work in MultimodalDataset).
MODALITY_NAMES = ("image", "audio", "text")
QUALITY_LEVELS = {
    "image": ("clean", "noisy", "occluded", "missing"),
    "audio": ("clean", "noisy", "missing"),
    "text": ("informative", "uninformative", "misleading", "missing"),
}
IMAGE_SIZE = 32
SAMPLE_RATE = 8000
#: Each class's melody, in semitones above the clip's base pitch: the contour is the class.
MELODIES = (
    (0, 4, 7),        # circle: up, up
    (0, 0, 0),        # square: flat
    (0, 7, 0),        # triangle: up, down
    (7, 0, 7),        # diamond: down, up
    (7, 4, 0),        # star: down, down
    (0, 12),          # cross: one octave leap
    (0, 0, 7, 7),     # ring: low, low, high, high
    (0, 5, 0, 5),     # hexagon: see-saw
)
