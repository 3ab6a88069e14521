"""Checks for the made-up exercises 98.x of tests/test_grading.py.

The grader takes them like the course's own (``grade_notebook(check_files=[this file])``): they are
imported in the kernel before the submission's first cell, so a submission cannot redefine them.
Every exercise wants the answer 42; a hostile cell answers 42 only if its attack worked.
"""
from mmcourse.exercises import fail, register


def _check_42(answer):
    if type(answer) is not int or answer != 42:
        fail(f"expected double of 21, got {answer!r}", hint="multiply by 2")


for _number in range(1, 30):
    register(f"98.{_number}", "answer 42")(_check_42)
