"""The course's tooling: what runs, checks, grades and publishes the notebooks. No notebook imports
it; it may import the library, never the other way round.

    cli            the ``mmcourse`` command (a thin layer over the functions below)
    runner         ``mmcourse run`` / ``refresh``: execute the notebooks headless
    papermill_child  the process ``runner`` executes each notebook in
    student        ``mmcourse student``: solutions/ -> notebooks/
    grading        ``mmcourse grade``: grade submitted notebooks exercise by exercise
    sandbox        the bubblewrap sandbox and kernel a submission runs in
    grade_kernel   the grader's side inside a graded kernel (its own checks, tamper detection)
    site           ``mmcourse site``: the course website, offline
    bench/         ``mmcourse bench fusion``, ``bench regimes`` and ``bench train``

The notebook format they share (exercise headers, tags, mimetypes) is :mod:`mmcourse.notebook_format`.
"""
from pathlib import Path

#: The folder this package was installed from (a course checkout when installed editable).
CHECKOUT = Path(__file__).resolve().parents[2]
