"""The Chinese edition (mmcourse.tools.translate, translation_check, mmcourse.exercises.i18n): in sync with the
English course by construction.

The repository's edition passes the sync check; on a copy of the course, editing one English
cell without its translation, a translated code cell, a lost number, a missing, extra or
untranslated cell each fail it. Check messages appear in the notebook's language, with the
English as the fallback. No notebook is executed here (tests/test_notebooks.py runs one Chinese
notebook; tests/test_browser.py opens one in JupyterLab).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from mmcourse.exercises import ExerciseFailed, NotSolved, check, i18n
from mmcourse.notebook_format import CHECK_MIMETYPE, exercise_id
from mmcourse.tools import translate as tr
from mmcourse.tools import translation_check as tc
from mmcourse.tools.cli import main as cli_main
from mmcourse.tools.student import student_version

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
NAME = "00_setup_and_tour"


def _cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "markdown"]


# ------------------------------------------------------------------ the repository's edition

def test_the_chinese_edition_is_complete_and_in_sync():
    report = tc.sync_report(ROOT, "zh")
    assert not report.problems, "the Chinese edition is out of sync:\n" + report.format()
    english_cells = sum(len(_cells(nbformat.read(p, as_version=4))) for p in ENGLISH)
    assert report.cells == english_cells


def test_every_english_notebook_has_both_chinese_versions():
    for path in ENGLISH:
        for folder in ("solutions/zh", "notebooks/zh"):
            assert (ROOT / folder / path.name).is_file(), f"{folder}/{path.name} is missing"


def test_code_cells_and_outputs_are_the_english_ones():
    for path in ENGLISH:
        english = nbformat.read(path, as_version=4)
        chinese = nbformat.read(ROOT / "solutions" / "zh" / path.name, as_version=4)
        assert [c.id for c in english.cells] == [c.id for c in chinese.cells]
        assert chinese.metadata["mmcourse"]["lang"] == "zh"
        for en, zh in zip(english.cells, chinese.cells):
            assert en.cell_type == zh.cell_type
            if en.cell_type != "code":
                assert tc.CJK_RE.search(zh.source) or not tc.WORD_RE.search(en.source), \
                    f"{path.name} {en.id}: markdown left in English"
                continue
            assert zh.source == en.source, f"{path.name} {en.id}: the code differs"
            assert len(zh.outputs) == len(en.outputs)
            for out_en, out_zh in zip(en.outputs, zh.outputs):
                if CHECK_MIMETYPE in out_en.get("data", {}):  # a check's line, in Chinese
                    bundle = out_zh["data"][CHECK_MIMETYPE]
                    assert bundle["id"] == out_en["data"][CHECK_MIMETYPE]["id"]
                    assert bundle["passed"] and bundle["message"].startswith(f"练习 {bundle['id']} 通过")
                else:
                    assert out_zh == out_en, f"{path.name} {en.id}: an output differs"


def test_the_student_edition_has_the_same_exercises_and_a_chinese_stub():
    for path in ENGLISH:
        en = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
        zh = nbformat.read(ROOT / "notebooks" / "zh" / path.name, as_version=4)
        assert [exercise_id(c) for c in en.cells] == [exercise_id(c) for c in zh.cells]
        assert [c.source for c in en.cells if c.cell_type == "code"] == \
               [c.source for c in zh.cells if c.cell_type == "code"]
        if any("*Your answer here.*" in c.source for c in _cells(en)):
            assert any("*在此写下你的答案。*" in c.source for c in _cells(zh))
            assert not any("*Your answer here.*" in c.source for c in _cells(zh))


def test_the_cli_check_passes_and_lists_untranslated_messages(capsys):
    assert cli_main(["translate", "--check"]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out and "check messages:" in out


# ------------------------------------------------------------------ drift is caught

@pytest.fixture
def course(tmp_path):
    """A copy of the course with one notebook (00) in English and Chinese."""
    for folder in ("solutions", "notebooks", "solutions/zh", "notebooks/zh"):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(ROOT / folder / f"{NAME}.ipynb", tmp_path / folder)
    (tmp_path / "translations" / "zh").mkdir(parents=True)
    shutil.copy(ROOT / "translations" / "zh" / f"{NAME}.md", tmp_path / "translations" / "zh")
    assert not tc.sync_report(tmp_path, "zh").problems
    return tmp_path


def _edit(path: Path, cell_type: str, change) -> str:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == cell_type and not c.source.startswith("#"))
    cell.source = change(cell.source)
    nbformat.write(nb, path)
    return cell.id


def _problems(root: Path) -> str:
    return "\n".join(tc.sync_report(root, "zh").problems)


def test_an_english_cell_edited_without_its_translation_is_stale(course):
    cell = _edit(course / "solutions" / f"{NAME}.ipynb", "markdown", lambda s: s + " One more sentence.")
    problems = _problems(course)
    assert f"{cell}: stale" in problems
    # updating the translation and stamping it clears it
    path = course / "translations" / "zh" / f"{NAME}.md"
    cells = tr.read_translation(path)
    cells[cell].text += "再加一句。"
    path.write_text(tr.render_translation("zh", f"{NAME}.ipynb", list(cells.values())), encoding="utf-8")
    tr.update_files(course, "zh", stamp={cell})
    tr.build_edition(course, "zh")
    assert not tc.sync_report(course, "zh").problems


def test_a_translated_code_cell_that_differs_is_caught(course):
    _edit(course / "solutions" / "zh" / f"{NAME}.ipynb", "code", lambda s: s + "\nprint('extra')")
    assert f"solutions/zh/{NAME}.ipynb: out of date" in _problems(course)
    tr.build_edition(course, "zh")  # the build restores the English code
    assert not tc.sync_report(course, "zh").problems


def test_an_english_code_change_makes_the_edition_out_of_date(course):
    _edit(course / "solutions" / f"{NAME}.ipynb", "code", lambda s: s + "\n# a comment")
    problems = _problems(course)
    assert f"solutions/zh/{NAME}.ipynb: out of date" in problems
    assert f"notebooks/zh/{NAME}.ipynb: out of date" in problems


def _rewrite(course: Path, change) -> None:
    path = course / "translations" / "zh" / f"{NAME}.md"
    cells = list(tr.read_translation(path).values())
    cells = change(cells)
    path.write_text(tr.render_translation("zh", f"{NAME}.ipynb", cells), encoding="utf-8")


def test_a_lost_number_missing_extra_and_untranslated_cells_are_caught(course):
    english = _cells(nbformat.read(course / "solutions" / f"{NAME}.ipynb", as_version=4))
    with_number = next(c for c in english if "2" in c.source and "`" not in c.source)

    def change(cells):
        for cell in cells:
            if cell.cell_id == with_number.id:
                cell.text = tc.NUMBER_RE.sub("若干", cell.text)
        cells[1].text = english[1].source  # left in English
        del cells[2]                        # missing
        cells.append(tr.Cell("nb00-999", cells[0].state, "多出来的单元格"))
        return cells

    _rewrite(course, change)
    problems = _problems(course)
    assert f"{with_number.id}: numbers of the English text missing" in problems
    assert f"{english[1].id}: not translated" in problems
    assert f"{english[2].id}: missing" in problems
    assert "nb00-999: extra" in problems


def test_update_adds_missing_cells_marked_for_translation(course):
    _rewrite(course, lambda cells: cells[:-1])
    tr.update_files(course, "zh")
    cells = tr.read_translation(course / "translations" / "zh" / f"{NAME}.md")
    last = _cells(nbformat.read(course / "solutions" / f"{NAME}.ipynb", as_version=4))[-1]
    assert cells[last.id].state == "missing" and cells[last.id].text == last.source.strip("\n")
    assert f"{last.id}: not translated yet" in _problems(course)


def test_bad_translation_files_get_clear_errors(tmp_path):
    bad = tmp_path / "00_x.md"
    bad.write_text("<!-- cell nb00-000 en:123 -->\n文本\n", encoding="utf-8")
    with pytest.raises(tr.TranslationError, match="line 1: a cell marker looks like"):
        tr.read_translation(bad)
    bad.write_text("stray text\n<!-- cell nb00-000 missing -->\n", encoding="utf-8")
    with pytest.raises(tr.TranslationError, match="text before the first cell marker"):
        tr.read_translation(bad)
    bad.write_text("<!-- cell nb00-000 missing -->\na\n<!-- cell nb00-000 missing -->\nb\n")
    with pytest.raises(tr.TranslationError, match="nb00-000 is translated twice"):
        tr.read_translation(bad)
    with pytest.raises(tr.TranslationError, match="no edition in language 'fr'"):
        tr.check_language("fr")
    assert cli_main(["translate", "--lang", "fr", "--check"]) == 1
    with pytest.raises(tr.TranslationError, match="no translated cell nb00-999"):
        tr.update_files(ROOT, "zh", stamp={"nb00-999"})


def test_cell_problems_ignore_wrapped_code_and_keep_formulas():
    english = "Call `f(a,\nb)` with $x_1$ on 3 samples (0.889)."
    assert tc.cell_problems(english, "用 3 个样本调用 `f(a,\nb)`，$x_1$（0.889）。") == []
    problems = tc.cell_problems(english, "用 3 个样本调用 `f(a, b)`，$x_2$（0.89）。")
    assert any("code or formulas" in p for p in problems)
    assert any("numbers of the English text missing: 0.889" in p for p in problems)


# ------------------------------------------------------------------ check messages

def test_language_comes_from_the_environment_or_the_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(i18n.LANG_ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert i18n.language() == "en"
    (tmp_path / "notebooks" / "zh").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "zh")
    assert i18n.language() == "zh"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "notebooks" / "zh" / "05_x.ipynb"))
    assert i18n.language() == "zh"
    monkeypatch.setenv(i18n.LANG_ENV, "en")
    assert i18n.language() == "en"


def test_templates_match_whole_messages_and_fill_in_values():
    translated = i18n.translate("normalise(x) returned shape (3, 32) but (32, 3) was expected", "zh")
    assert "normalise(x)" in translated and "(3, 32)" in translated and "(32, 3)" in translated
    assert "was expected" not in translated and tc.CJK_RE.search(translated)
    unknown = "a message no check writes"
    assert i18n.translate(unknown, "zh") == unknown  # the English is the fallback
    assert i18n.translate("anything", "en") == "anything"


def test_every_catalog_entry_formats_and_most_messages_are_translated():
    problems, fallbacks, (done, total) = tc.message_report("zh")
    assert problems == []
    assert done / total > 0.9, f"only {done} of {total} check messages are translated"
    source = i18n.source_templates()
    assert set(i18n.catalog("zh")["titles"]) >= set(source["titles"]), "every title is translated"


def test_a_check_speaks_the_notebooks_language(monkeypatch):
    import torch

    monkeypatch.setenv(i18n.LANG_ENV, "zh")
    with pytest.raises(ExerciseFailed) as failed:
        check("1.2", lambda x: x)  # returns its input: not normalised
    text = str(failed.value)
    assert text.startswith("练习 1.2 未通过：") and "提示：" in text
    with pytest.raises(NotSolved, match="练习 3.1 尚未完成"):
        raise NotSolved("3.1")
    monkeypatch.setenv(i18n.LANG_ENV, "en")
    with pytest.raises(ExerciseFailed, match="Exercise 1.2 failed"):
        check("1.2", lambda x: x)
    del torch


def test_not_solved_survives_a_round_trip_in_chinese(monkeypatch):
    import pickle

    monkeypatch.setenv(i18n.LANG_ENV, "zh")
    err = pickle.loads(pickle.dumps(NotSolved("4.2")))
    assert err.exercise_id == "4.2"
    assert NotSolved(str(NotSolved("4.2"))).exercise_id == "4.2"


def test_student_stub_follows_the_notebooks_language():
    nb = nbformat.read(ROOT / "solutions" / "zh" / "04_alignment_and_concat.ipynb", as_version=4)
    student = student_version(nb, "04_alignment_and_concat.ipynb")
    text = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
    assert "<!-- BEGIN SOLUTION -->" not in text
    assert ("*在此写下你的答案。*" in text) == any("BEGIN SOLUTION" in c.source for c in _cells(nb))


def test_run_refuses_an_unknown_language(capsys):
    assert cli_main(["run", "--lang", "fr", "--only", "00"]) == 2
    assert "no edition in language 'fr'" in capsys.readouterr().err


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_messages_and_hints_with_braces_print_in_both_languages(monkeypatch, lang):
    # 5.5's hint and message quote a dict ({'equal (1/3 each)': ...}): braces that no template
    # may read as its own fields
    monkeypatch.setenv(i18n.LANG_ENV, lang)
    with pytest.raises(ExerciseFailed) as failed:
        check("5.5", {"image only": 0.5})
    text = str(failed.value)
    assert text.startswith("Exercise 5.5 failed" if lang == "en" else "练习 5.5 未通过")
    assert "{'" in text and ("Hint:" in text or "提示：" in text)
