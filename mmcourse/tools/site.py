"""The course as a static website, built offline from the solution notebooks and their outputs.

``build_site(root, out)`` stages the site's sources in ``out/source`` (``site/_config.yml``,
``site/_toc.yml`` and ``site/*.md``, plus ``README.md`` as the home page, ``CONTRIBUTING.md``,
``INSTRUCTORS.md``, the dataset card ``datasets/README.md`` and ``solutions/*.ipynb``, in the same
relative layout as the repository so the Markdown links between them keep working), then runs
Jupyter Book 1 (Sphinx) with execution off: the pages show the committed outputs. The HTML lands
in ``out/html``; open ``out/html/index.html``.

The website does not hand out the answers (:mod:`mmcourse.tools.site_pages` makes the pages):

* by default each exercise's answer, and the output of its cell, is folded behind a "Show
  solution N.M" toggle (a ``<details>`` element: no JavaScript, keyboard-accessible); the
  notebook download button still gives the whole solution notebook;
* ``solutions=False`` (``mmcourse site --no-solutions``) builds a site for learners with no
  solution at all: the student versions (as in ``notebooks/``, staged and linked as
  ``notebooks/NN_topic``) with the committed outputs of the lesson cells, none of the exercise
  cells.

The Chinese edition (``solutions/zh/``, or ``notebooks/zh/`` without solutions) has pages of its
own, under ``solutions/zh/NN_topic``, with ``README.zh-CN.md``, ``INSTRUCTORS.zh-CN.md`` and the
glossary in a part of the navigation; every notebook page starts with a language switch (a link
to the same notebook in the other language).

Offline: nothing is fetched while building or when reading the site. MathJax 2.7 is copied from
the pinned PyPI package ``jupyter-server-mathjax``; the notebooks store no widget state, so no
widget manager is loaded. Navigation by part comes from ``site/_toc.yml``; entries whose file or
glob matches nothing are dropped (and reported), so the site never links to a missing notebook.

From the command line: ``mmcourse site [--no-solutions] [--out DIR] [--root DIR]``.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mmcourse.tools.site_pages import drop_course_mimetypes, folded_notebook, student_notebook
from mmcourse.tools.student import NotebookError

# Files of the repository the site shows besides the notebooks (missing ones are skipped).
PAGES = ("README.md", "CONTRIBUTING.md", "INSTRUCTORS.md", "BENCHMARKS.md", "datasets/README.md",
         "README.zh-CN.md", "INSTRUCTORS.zh-CN.md", "translations/zh/GLOSSARY.md")
#: The language switch put at the top of each notebook's page (English page, translated page).
SWITCH = {"zh": ("English · [中文](zh/{name})", "[English](../{name}) · 中文")}
DEFAULT_OUT = "site/_build"


class SiteError(RuntimeError):
    """The site could not be built; the message says why and holds the builder's log tail."""


def _mathjax_dir() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError as err:  # pragma: no cover - a pinned test dependency
        raise SiteError("the site needs MathJax from the package jupyter-server-mathjax "
                        "(pinned in pyproject.toml's test extra): run `bash scripts/setup.sh`") from err
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():  # pragma: no cover
        raise SiteError(f"jupyter-server-mathjax has no MathJax.js in {static}")
    return static


def _docname_exists(src: Path, name: str) -> bool:
    return any((src / f"{name}{ext}").is_file() for ext in (".md", ".ipynb", ".rst")) or \
        (src / name).is_file()


def _glob_matches(src: Path, pattern: str) -> list[str]:
    docs = [p.relative_to(src).with_suffix("").as_posix()
            for p in src.rglob("*") if p.suffix in (".md", ".ipynb") and p.is_file()]
    return sorted(d for d in docs if fnmatch.fnmatch(d, pattern))


def prune_toc(toc: dict, src: Path) -> tuple[dict, list[str]]:
    """Drop toc entries whose file or glob matches nothing under ``src`` and parts left empty.

    Returns the pruned toc and a list of what was dropped (for the build report)."""
    dropped: list[str] = []

    def keep(entry: dict) -> bool:
        if "file" in entry and not _docname_exists(src, entry["file"]):
            dropped.append(f"file {entry['file']} (not there)")
            return False
        if "glob" in entry and not _glob_matches(src, entry["glob"]):
            dropped.append(f"glob {entry['glob']} (no notebook matches)")
            return False
        for key in ("sections", "chapters"):
            if key in entry:
                entry[key] = [e for e in entry[key] if keep(e)]
                if not entry[key]:
                    del entry[key]
        return True

    parts = []
    for part in toc.get("parts", []):
        part["chapters"] = [c for c in part.get("chapters", []) if keep(c)]
        if part["chapters"]:
            parts.append(part)
        else:
            dropped.append(f"part {part.get('caption', '?')!r} (empty)")
    if "parts" in toc:
        toc["parts"] = parts
    return toc, dropped


def _stage_notebook(path: Path, dest: Path, solutions: bool, switch: str | None = None) -> None:
    """Write the page version of solution notebook ``path`` to ``dest``: its answers folded
    (``solutions=True``) or its student version with the lesson cells' outputs; ``switch``, a
    markdown line put above the page's first cell (the language switch)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    try:
        page = folded_notebook(nb) if solutions else student_notebook(nb, path.name)
    except NotebookError as err:
        raise SiteError(f"cannot make the page of {path.name}: {err}") from err
    if switch:
        page["cells"].insert(0, {"cell_type": "markdown", "id": "mmcourse-language-switch",
                                 "metadata": {}, "source": switch})
    dest.write_text(json.dumps(page, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _point_toc_at(toc: dict, folder: str) -> dict:
    """Rewrite the toc's ``solutions/...`` entries to ``folder/...`` (in place; returns it)."""
    for entry in toc.get("parts", []) + toc.get("chapters", []):
        for key in ("file", "glob"):
            if str(entry.get(key, "")).startswith("solutions/"):
                entry[key] = folder + entry[key][len("solutions"):]
        for child in ("chapters", "sections"):
            if child in entry:
                _point_toc_at({"chapters": entry[child]}, folder)
    return toc


def stage_sources(root: Path, src: Path, solutions: bool = True) -> list[str]:
    """Copy the site's sources into ``src`` (emptied first); returns what the toc dropped.

    The notebooks are staged as ``solutions/NN_topic.ipynb`` with their answers folded, or, with
    ``solutions=False``, as ``notebooks/NN_topic.ipynb`` without them."""
    root = Path(root)
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    site_dir = root / "site"
    for path in site_dir.glob("*.md"):
        shutil.copy2(path, src / path.name)
    shutil.copy2(site_dir / "_config.yml", src / "_config.yml")
    for rel in PAGES:
        if (root / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, src / rel)
    folder = "solutions" if solutions else "notebooks"
    (src / folder).mkdir()
    notebooks = sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SiteError(f"no solution notebooks in {root / 'solutions'}")
    editions = [lang for lang in SWITCH if (root / "solutions" / lang).is_dir()]
    for nb in notebooks:
        translated = [lang for lang in editions if (root / "solutions" / lang / nb.name).is_file()]
        switch = " | ".join(SWITCH[lang][0].format(name=nb.name) for lang in translated)
        _stage_notebook(nb, src / folder / nb.name, solutions, switch or None)
        for lang in translated:  # the edition's page, from its solution notebook
            (src / folder / lang).mkdir(exist_ok=True)
            _stage_notebook(root / "solutions" / lang / nb.name, src / folder / lang / nb.name,
                            solutions, SWITCH[lang][1].format(name=nb.name))
    # Served as _static/mathjax (html_static_path in _config.yml). Not in a _static folder of the
    # sources: Jupyter Book would add every .js file there to every page.
    shutil.copytree(_mathjax_dir(), src / "_vendor" / "mathjax",
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    toc = _point_toc_at(yaml.safe_load((site_dir / "_toc.yml").read_text()), folder)
    toc, dropped = prune_toc(toc, src)
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))
    return dropped


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.is_file():
        return [str(exe)]
    if shutil.which("jupyter-book"):
        return ["jupyter-book"]
    raise SiteError("jupyter-book is not installed (pinned in pyproject.toml's test extra): "
                    "run `bash scripts/setup.sh`")


# MyST-NB labels every fold's <summary> "Toggle hidden content", which would hide its visible
# text ("Show solution 2.2") from screen readers; without the label the text is the name.
_MYSTNB_SUMMARY = '<summary aria-label="Toggle hidden content">'


def _finish_html(html: Path, root: Path, solutions: bool) -> None:
    """After the build: name each fold by its visible text, and make the notebook download of a
    page with folded answers the runnable solution notebook (the staged copy has its exercise
    cells split at the solution markers)."""
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if _MYSTNB_SUMMARY in text:
            page.write_text(text.replace(_MYSTNB_SUMMARY, "<summary>"), encoding="utf-8")
    if solutions:
        for source in (html / "_sources" / "solutions").rglob("*.ipynb"):
            relative = source.relative_to(html / "_sources" / "solutions")
            nb = drop_course_mimetypes(json.loads((root / "solutions" / relative).read_text(
                encoding="utf-8")))
            source.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
                              encoding="utf-8")


def build_site(root: str | Path = ".", out: str | Path | None = None, *,
               solutions: bool = True, quiet: bool = False) -> dict:
    """Build the course website; returns ``{"html": Path, "index": Path, "seconds": float,
    "warnings": [str], "dropped": [str], "log": str}``.

    ``root`` is the course folder (with ``site/`` and ``solutions/``), ``out`` the build folder
    (default ``site/_build`` under ``root``; it holds ``source/``, the staged sources, and
    ``html/``). ``solutions=False`` leaves every answer out (see the module docstring). Raises
    ``SiteError`` when the builder fails. Warnings do not fail the build; they are returned (and
    the tests require there are none)."""
    root = Path(root).resolve()
    if not (root / "site" / "_toc.yml").is_file():
        raise SiteError(f"{root} has no site/_toc.yml; is it the course folder?")
    out = Path(out).resolve() if out else root / DEFAULT_OUT
    start = time.perf_counter()
    src = out / "source"
    dropped = stage_sources(root, src, solutions)
    build = out / "jb"
    if build.exists():
        shutil.rmtree(build)
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    proc = subprocess.run(
        [*_jupyter_book(), "build", str(src), "--path-output", str(build), "--builder", "html",
         "--all"],
        cwd=out, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out / "build.log").write_text(log)
    if proc.returncode != 0:
        raise SiteError(f"jupyter-book build failed (exit {proc.returncode}); log in "
                        f"{out / 'build.log'}:\n{log[-3000:]}")
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(build / "_build" / "html"), html)
    shutil.rmtree(build, ignore_errors=True)
    _finish_html(html, root, solutions)
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    result = {"html": html, "index": html / "index.html",
              "seconds": round(time.perf_counter() - start, 1), "warnings": warnings,
              "dropped": dropped, "log": log}
    if not quiet:
        print(format_result(result))
    return result


def format_result(result: dict) -> str:
    lines = [f"site built in {result['seconds']} s: {result['index']}"]
    for item in result["dropped"]:
        lines.append(f"  not in the navigation: {item}")
    for line in result["warnings"]:
        lines.append(f"  {line}")
    if result["warnings"]:
        lines.append(f"{len(result['warnings'])} warning(s); full log: "
                     f"{Path(result['html']).parent / 'build.log'}")
    return "\n".join(lines)

