"""Translated editions of the course, kept in sync with the English notebooks by construction.

The English solution notebooks (``solutions/NN_*.ipynb``) stay the single source. A translation
holds only the *markdown* cells, one text file per notebook, ``translations/<lang>/NN_*.md``::

    <!-- cell nb01-003 en:5f0c2a9e61d4b7a0 -->
    ## 1. 图像是数字数组 (Images are arrays of numbers)
    ...

Each marker names the English cell it translates (its id) and the version it was translated from
(``en:`` and the first 16 hex digits of the SHA-256 of the English cell's source). From the
English solution notebook and that file, :func:`build_notebook` writes the translated solution
notebook (``solutions/<lang>/``): markdown cells replaced, code cells and their outputs copied, so
a translated code cell cannot differ from the English one; only the lines a check displays are
shown in the edition's language (what a learner running it sees, :mod:`mmcourse.exercises.i18n`).
The student edition (``notebooks/<lang>/``) is made from it by :mod:`mmcourse.tools.student`.

:func:`mmcourse.tools.translation_check.sync_report` lists what is out of sync: English markdown cells without a translation
(*missing*), translations of cells that no longer exist (*extra*), translations made from an older
English source (*stale*), numbers the English cell quotes that its translation lacks, markdown
solution markers that differ, and translated notebooks on disk that differ from what the build
gives (an edited code cell or output). ``mmcourse translate --check`` prints it; the tests fail on
any entry.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mmcourse.notebook_format import CHECK_MIMETYPE, NOTEBOOK_NAME_RE

#: Languages with an edition: code -> (folder name, name in that language).
LANGUAGES = {"zh": "简体中文"}
MARKER_RE = re.compile(r"^<!-- cell (?P<id>\S+) (?P<state>en:(?P<hash>[0-9a-f]{16})|missing) -->$")
HEADER = ("<!-- mmcourse translation ({lang}) of solutions/{name}. Translate the text under each "
          "cell marker; keep the markers. 'mmcourse translate --check' lists what is out of sync. -->")


class TranslationError(ValueError):
    """A translation file that cannot be read (bad marker, duplicate cell), or an unknown language."""


def cell_hash(source: str) -> str:
    """The version stamp of an English cell: the first 16 hex digits of SHA-256 of its source."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def check_language(lang: str) -> str:
    """``lang`` if the course has an edition in it; TranslationError naming the ones it has."""
    if lang not in LANGUAGES:
        raise TranslationError(f"no edition in language {lang!r}; the course has: "
                               f"{', '.join(sorted(LANGUAGES))} (and the English original, 'en')")
    return lang


@dataclass
class Cell:
    """One translated cell: ``state`` is ``"en:<hash>"`` or ``"missing"`` (not translated yet)."""

    cell_id: str
    state: str
    text: str

    @property
    def stamp(self) -> str | None:
        return self.state[3:] if self.state.startswith("en:") else None


def read_translation(path: str | Path) -> dict[str, Cell]:
    """The cells of a translation file, by English cell id, in file order.

    Raises TranslationError for text before the first marker (other than the header comment), a
    line that looks like a marker but is malformed, or a cell id given twice.
    """
    path = Path(path)
    cells: dict[str, Cell] = {}
    current: Cell | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            current.text = "\n".join(lines).strip("\n")

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("<!-- cell "):
            match = MARKER_RE.match(line.strip())
            if not match:
                raise TranslationError(f"{path}, line {number}: a cell marker looks like "
                                       f"'<!-- cell nb01-003 en:<16 hex digits> -->', not {line.strip()!r}")
            close()
            if match["id"] in cells:
                raise TranslationError(f"{path}, line {number}: cell {match['id']} is translated twice")
            current = Cell(match["id"], match["state"], "")
            cells[current.cell_id] = current
            lines = []
        elif current is None:
            if line.strip() and not line.startswith("<!-- mmcourse translation"):
                raise TranslationError(f"{path}, line {number}: text before the first cell marker")
        else:
            lines.append(line)
    close()
    return cells


def render_translation(lang: str, name: str, cells: list[Cell]) -> str:
    """The text of a translation file with ``cells`` in order (what :func:`read_translation` reads)."""
    parts = [HEADER.format(lang=lang, name=name), ""]
    for cell in cells:
        parts += [f"<!-- cell {cell.cell_id} {cell.state} -->", cell.text.strip("\n"), ""]
    return "\n".join(parts)


def update_translation(english: NotebookNode, existing: dict[str, Cell], lang: str, name: str,
                       stamp: set[str] = frozenset()) -> str:
    """The translation file re-ordered as the English notebook: cells it lacks added as
    ``missing`` with the English text to translate, cells no longer in the English notebook
    dropped, and the cells named in ``stamp`` re-stamped with the current English hash (after
    their text was updated). Stale stamps are otherwise kept, so the check still reports them."""
    cells = []
    for cell in english.cells:
        if cell.cell_type != "markdown":
            continue
        source = _source(cell)
        old = existing.get(cell.id)
        if old is None:
            cells.append(Cell(cell.id, "missing", source))
        elif cell.id in stamp:
            cells.append(Cell(cell.id, f"en:{cell_hash(source)}", old.text))
        else:
            cells.append(old)
    return render_translation(lang, name, cells)


def editions(root: Path) -> list[str]:
    """The languages that have a ``translations/<lang>/`` folder in the course at ``root``."""
    folder = Path(root) / "translations"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name in LANGUAGES) \
        if folder.is_dir() else []


def translation_path(root: Path, lang: str, notebook: str) -> Path:
    """``translations/<lang>/NN_topic.md`` for the notebook file name ``NN_topic.ipynb``."""
    return Path(root) / "translations" / lang / (Path(notebook).stem + ".md")


def english_for(root: Path, translation: Path) -> Path:
    """The English solution notebook a translation file belongs to."""
    return Path(root) / "solutions" / (Path(translation).stem + ".ipynb")


def _translation_files(root: Path, lang: str) -> list[Path]:
    return sorted((Path(root) / "translations" / lang).glob("[0-9][0-9]_*.md"))


def _read_english(path: Path) -> NotebookNode:
    if not path.is_file():
        raise TranslationError(f"{path} does not exist: a translation file is named after the English "
                               f"solution notebook it translates (translations/zh/05_weighted_fusion.md "
                               f"for solutions/05_weighted_fusion.ipynb)")
    return nbformat.read(path, as_version=4)


# ---------------------------------------------------------------- building an edition

def _translate_check_output(output: dict, lang: str) -> None:
    """A check's displayed verdict (a passed check, in a solution notebook) in ``lang``: what the
    same code shows when it runs in that edition (:func:`mmcourse.exercises.core.passed_line`)."""
    from mmcourse.exercises.core import _lookup, passed_line

    bundle = output.get("data", {}).get(CHECK_MIMETYPE)
    if not bundle or not bundle.get("passed"):
        return
    exercise_id = bundle["id"]
    title = _lookup(exercise_id).title
    english = passed_line(exercise_id, title)
    message = bundle["message"]
    if message == english:
        details = None
    elif message.startswith(english + " (") and message.endswith(")"):
        details = message[len(english) + 2:-1]
    else:
        return  # not a line this version of the checks writes; left as it is
    translated = passed_line(exercise_id, title, details, lang)
    output["data"][CHECK_MIMETYPE] = {**bundle, "message": translated}
    if output["data"].get("text/plain") == message:
        output["data"]["text/plain"] = translated


def build_notebook(english: NotebookNode, cells: dict[str, Cell], lang: str, name: str) -> NotebookNode:
    """The ``lang`` edition of an English solution notebook: each markdown cell's text from
    ``cells`` (the English where there is no translation: the check reports it), code cells and
    outputs copied (a passed check's line in ``lang``), ``metadata.mmcourse`` naming the language
    and the English notebook. Pure: ``english`` is not changed."""
    import copy

    out = copy.deepcopy(english)
    for cell in out.cells:
        if cell.cell_type == "markdown":
            translated = cells.get(cell.id)
            if translated is not None and translated.stamp is not None:
                cell.source = translated.text
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                _translate_check_output(output, lang)
    out.metadata["mmcourse"] = {**english.metadata.get("mmcourse", {}), "lang": lang,
                                "translation_of": f"solutions/{name}"}
    return out


def _render(nb: NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def edition_notebooks(root: Path, lang: str) -> dict[str, str]:
    """``{file name: notebook text}`` of the ``lang`` edition's solution notebooks, built from the
    English solutions and ``translations/<lang>/`` (English notebooks without a translation file
    are left out: the check reports them)."""
    root = Path(root)
    built = {}
    for path in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        if not NOTEBOOK_NAME_RE.match(path.name):
            continue
        source = translation_path(root, lang, path.name)
        if source.is_file():
            english = nbformat.read(path, as_version=4)
            built[path.name] = _render(build_notebook(english, read_translation(source), lang, path.name))
    return built


def build_edition(root: Path, lang: str, check: bool = False) -> list[str]:
    """Write ``solutions/<lang>/`` from the English solutions and the translations, then the
    student edition ``notebooks/<lang>/`` (:func:`mmcourse.tools.student.make_student_notebooks`).
    Returns the paths written (``check=True``: the paths that are missing or differ; nothing is
    written). A notebook in ``solutions/<lang>/`` with no English original is reported, not deleted."""
    from mmcourse.tools.student import make_student_notebooks

    root = Path(root)
    check_language(lang)
    folder = root / "solutions" / lang
    built = edition_notebooks(root, lang)
    changed = []
    orphans = sorted(p.name for p in folder.glob("*.ipynb") if p.name not in built) if folder.is_dir() else []
    for name, text in built.items():
        target = folder / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            changed.append(f"solutions/{lang}/{name}")
            if not check:
                folder.mkdir(parents=True, exist_ok=True)
                with open(target, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(text)
    if orphans:
        message = (f"solutions/{lang}/ has {', '.join(orphans)} without an English original in "
                   f"solutions/ and translations/{lang}/; delete it")
        if not check:
            raise TranslationError(message)
        changed.append(message)
    if check:
        if not folder.is_dir():
            return changed
        # What the student edition would be, from the edition on disk as the build would write it.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for name, text in built.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            stale = make_student_notebooks(tmp, root / "notebooks" / lang, check=True)
        return changed + [f"notebooks/{lang}/{name}" for name in stale]
    if folder.is_dir():
        changed += [f"notebooks/{lang}/{name}" for name in
                    make_student_notebooks(folder, root / "notebooks" / lang)]
    return changed


def update_files(root: Path, lang: str, stamp: set[str] = frozenset()) -> list[str]:
    """:func:`update_translation` for every English solution notebook; returns the files changed.
    TranslationError, before anything is written, for a ``stamp`` id that no translation file has."""
    root = Path(root)
    texts, seen = {}, set()
    for path in sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb")):
        target = translation_path(root, lang, path.name)
        existing = read_translation(target) if target.is_file() else {}
        seen |= set(existing) & set(stamp)
        texts[target] = update_translation(nbformat.read(path, as_version=4), existing, lang,
                                           path.name, stamp)
    unknown = sorted(set(stamp) - seen)
    if unknown:
        raise TranslationError(f"no translated cell {', '.join(unknown)} in translations/{lang}/ "
                               f"(cell ids look like nb05-003)")
    changed = []
    for target, text in texts.items():
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            changed.append(str(target.relative_to(root)))
    return changed
