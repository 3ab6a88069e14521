"""mmcourse: the helper library of the multimodal deep learning course.

The layout follows the course's pipeline:
    data/        the course dataset, Datasets and collate, real-data adapters
    exercises/   exercise checks and the solution -> student notebook generator
    viz          figures shared by the notebooks
    reproducibility, device, progress, envinfo   the small helpers every notebook uses
    runner       executes the course headless (``mmcourse run``)
"""
import os as _os

from mmcourse.device import get_device
from mmcourse.progress import progress
from mmcourse.reproducibility import seed_everything

__version__ = "0.1.0"

if _os.environ.get("MMCOURSE_FIGURE_AUDIT"):  # set by the tests: check every figure drawn
    from mmcourse.figure_audit import install as _install_figure_audit

    _install_figure_audit(_os.environ["MMCOURSE_FIGURE_AUDIT"])
__all__ = ["get_device", "progress", "seed_everything", "__version__"]
