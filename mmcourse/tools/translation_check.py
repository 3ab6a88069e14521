"""Checking a translated edition against the English course (``mmcourse translate --lint`` and
``--check``); the file format and the build are in :mod:`mmcourse.tools.translate`.

:func:`cell_problems` compares one translated cell with its English source (numbers, code spans,
formulas, ``<details>`` blocks, solution markers, whether it is in Chinese at all);
:func:`lint_files` checks translation files against their English notebooks (missing, extra,
stale, re-ordered cells); :func:`sync_report` adds the notebooks on disk that differ from what the
build gives and the check messages without a translation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from mmcourse.notebook_format import MD_MARKER_RE
from mmcourse.tools.translate import (Cell, _read_english, _source, _translation_files,
                                      build_edition, cell_hash, check_language, english_for,
                                      read_translation, translation_path)

CJK_RE = re.compile(r"[\u4e00-\u9fff]")
# Inline code and formulas may wrap onto a second line, never over a blank line.
CODE_SPAN_RE = re.compile(r"```.*?```|`(?:[^`\n]|\n(?!\n))+`", re.DOTALL)
FORMULA_RE = re.compile(r"\$\$.*?\$\$|\$(?:[^$\n]|\n(?!\n))+\$", re.DOTALL)
DETAILS_RE = re.compile(r"<details\b|<summary\b")
WORD_RE = re.compile(r"[A-Za-z]{3,}")
#: A number in running text: digits not glued to a word ("nb05", "x2" are names, not numbers).
NUMBER_RE = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*")


def _protected(text: str) -> tuple[list[str], str]:
    """The code spans and formulas of ``text`` (kept verbatim in a translation) and the prose left."""
    kept = CODE_SPAN_RE.findall(text)
    prose = CODE_SPAN_RE.sub(" ", text)
    kept += FORMULA_RE.findall(prose)
    return kept, FORMULA_RE.sub(" ", prose)


def cell_problems(english: str, translated: str) -> list[str]:
    """What a translation of the English markdown ``english`` lacks: numbers written with digits,
    code spans and formulas (verbatim), solution markers, ``<details>``/``<summary>`` blocks, and
    Chinese text where the English has prose. Empty when nothing is wrong."""
    problems = []
    kept_en, prose_en = _protected(english)
    kept_zh, prose_zh = _protected(translated)
    lost = sorted(set(kept_en) - set(kept_zh))
    if lost:
        shown = ", ".join(repr(k if len(k) < 50 else k[:47] + "...") for k in lost[:4])
        problems.append(f"code or formulas changed or missing (keep them verbatim): {shown}"
                        + (f" and {len(lost) - 4} more" if len(lost) > 4 else ""))
    numbers = sorted(set(NUMBER_RE.findall(prose_en)) - set(NUMBER_RE.findall(prose_zh)),
                     key=lambda n: (len(n), n))
    if numbers:
        problems.append(f"numbers of the English text missing: {', '.join(numbers)}")
    if MD_MARKER_RE.findall(english) != MD_MARKER_RE.findall(translated):
        problems.append("the <!-- BEGIN SOLUTION --> / <!-- END SOLUTION --> markers differ from the English")
    if DETAILS_RE.findall(english) != DETAILS_RE.findall(translated):
        problems.append("the <details>/<summary> blocks differ from the English (same blocks, same order)")
    if len(WORD_RE.findall(prose_en)) >= 3 and not CJK_RE.search(prose_zh):
        problems.append("not translated (no Chinese text)")
    return problems


def lint_translation(english: NotebookNode, cells: dict[str, Cell], name: str) -> list[str]:
    """Problems of one translation file against its English solution notebook: missing, extra,
    stale or re-ordered cells and :func:`cell_problems` of each cell, one line each."""
    sources = {c.id: _source(c) for c in english.cells if c.cell_type == "markdown"}
    problems = []
    for cell_id, source in sources.items():
        cell = cells.get(cell_id)
        if cell is None:
            problems.append(f"{name} {cell_id}: missing (no translation of this English cell)")
        elif cell.stamp is None:
            problems.append(f"{name} {cell_id}: not translated yet (marked 'missing')")
        else:
            if cell.stamp != cell_hash(source):
                problems.append(f"{name} {cell_id}: stale (the English cell changed since it was "
                                f"translated; update the text, then `mmcourse translate --stamp {cell_id}`)")
            problems += [f"{name} {cell_id}: {p}" for p in cell_problems(source, cell.text)]
    extra = [cell_id for cell_id in cells if cell_id not in sources]
    problems += [f"{name} {cell_id}: extra (the English notebook has no markdown cell {cell_id})"
                 for cell_id in extra]
    order = [cell_id for cell_id in cells if cell_id in sources]
    if order != [cell_id for cell_id in sources if cell_id in cells]:
        problems.append(f"{name}: cells are not in the English notebook's order (`mmcourse translate "
                        f"--update` re-orders them)")
    return problems



def lint_files(root: Path, files: list[Path] | None, lang: str) -> list[str]:
    """:func:`lint_translation` for ``files`` (default: every translation file of ``lang``), and a
    line for each English notebook that has no translation file."""
    root = Path(root)
    problems = []
    if files is None:
        files = _translation_files(root, lang)
        have = {f.stem for f in files}
        problems += [f"{p.name}: no translation file {translation_path(root, lang, p.name).relative_to(root)}"
                     for p in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")) if p.stem not in have]
    for path in files:
        path = path if path.is_absolute() or path.exists() else root / path
        english = _read_english(english_for(root, path))
        problems += lint_translation(english, read_translation(path), path.stem)
    return problems


# ---------------------------------------------------------------- the sync check

@dataclass
class SyncReport:
    """:func:`sync_report`'s findings: ``problems`` fail the check; ``fallbacks`` are check
    messages shown in English for want of a translation (listed, allowed)."""

    lang: str
    cells: int = 0
    problems: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    messages: tuple[int, int] = (0, 0)

    def format(self) -> str:
        done, total = self.messages
        lines = [f"{self.lang} edition: {self.cells} translated markdown cells; "
                 f"{len(self.problems)} problem(s)"]
        lines += [f"  {problem}" for problem in self.problems]
        lines.append(f"check messages: {done} of {total} translated; the others are shown in English:")
        lines += [f"  {fallback}" for fallback in self.fallbacks]
        if self.problems:
            lines.append("fix the translation files, then run `mmcourse translate` (it writes "
                         f"solutions/{self.lang}/ and notebooks/{self.lang}/)")
        return "\n".join(lines)


def message_report(lang: str) -> tuple[list[str], list[str], tuple[int, int]]:
    """``(problems, fallbacks, (translated, total))`` of the check-message catalog of ``lang``:
    translations whose placeholders do not fit their English template, and the titles, hints and
    messages of the checks' source that have no translation yet."""
    from mmcourse.exercises import i18n

    wanted = i18n.source_templates()
    have = i18n.catalog(lang)
    problems, fallbacks = [], []
    for english, translated in have["messages"].items():
        problems += [f"messages_{lang}.json {english[:60]!r}: {p}"
                     for p in i18n.template_problems(english, translated)]
    total = done = 0
    for kind in ("titles", "hints"):
        for exercise_id in sorted(wanted[kind], key=lambda i: tuple(map(int, i.split(".")))):
            total += 1
            if exercise_id in have[kind]:
                done += 1
            else:
                fallbacks.append(f"{kind[:-1]} of {exercise_id}")
    for english in wanted["messages"]:
        total += 1
        if english in have["messages"]:
            done += 1
        else:
            fallbacks.append(f"message {english[:90]!r}")
    return problems, fallbacks, (done, total)


def sync_report(root: Path, lang: str) -> SyncReport:
    """Everything that is out of sync between the English course and its ``lang`` edition (see
    the module docstring)."""
    root = Path(root)
    check_language(lang)
    report = SyncReport(lang)
    report.problems += lint_files(root, None, lang)
    report.cells = sum(len(read_translation(p)) for p in _translation_files(root, lang))
    report.problems += [f"{path}: out of date (run `mmcourse translate`)"
                        for path in build_edition(root, lang, check=True)]
    problems, report.fallbacks, report.messages = message_report(lang)
    report.problems += problems
    return report
