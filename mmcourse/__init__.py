"""mmcourse: the helper library of the multimodal deep learning course.

The layout follows the course's pipeline:
    data/        the course dataset, Datasets and collate, real-data adapters
    exercises/   the exercise checks notebooks call
    viz          figures shared by the notebooks
    reproducibility, device, progress, envinfo   the small helpers every notebook uses
    notebook_format   the notebooks' format (exercise cells, tags, mimetypes), torch-free
    tools/       the tooling no notebook imports: the ``mmcourse`` command, runner, grader,
                 student generator, site, benches
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
