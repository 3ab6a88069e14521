"""Check messages in the notebook's language, with the English text as the fallback.

The checks are written in English. For another language, ``messages_<lang>.json`` (next to this
file) translates:

* ``titles`` and ``hints``: by exercise id, what ``@register`` gives;
* ``messages``: by *template*, the English text of a ``fail(...)`` message (or a ``hint=``) in
  which every ``{...}`` of the f-string is numbered in order: the source line
  ``fail(f"{name} returned shape {got} but {wanted} was expected")`` has the template
  ``"{0} returned shape {1} but {2} was expected"``, and its translation
  ``"{0} 返回的形状是 {1}，但应为 {2}"`` may use the numbers in any order.
  :func:`source_templates` finds the templates by reading the checks' source (``ast``), so the
  translation check can list the ones without a translation; a message built another way stays
  in English.

The language (:func:`language`): the environment variable ``MMCOURSE_LANG`` (``mmcourse run
--lang zh`` and the grader set it), else ``zh`` when the notebook is in a ``zh`` folder (Jupyter
gives the kernel the notebook's path in ``JPY_SESSION_NAME``, and starts it in the notebook's
folder), else English.
"""
from __future__ import annotations

import ast
import json
import os
import re
from functools import lru_cache
from pathlib import Path

LANG_ENV = "MMCOURSE_LANG"
LANGUAGES = ("en", "zh")
_HERE = Path(__file__).resolve().parent

#: The framing of every check's output, per language (the English is in core.py).
FRAMES = {
    "zh": {
        "passed": "练习 {id} 通过：{title}",
        "details": "（{details}）",
        "failed": "练习 {id} 未通过：{message}",
        "hint": "提示：{hint}",
        "not_passed_yet": "练习 {id} 尚未通过：请看下面的错误信息。",
        "not_solved_short": "练习 {id} 尚未完成。",
        "not_solved": ("练习 {id} 尚未完成：把它所在单元格中的两行 \"# YOUR CODE HERE\" / "
                       "\"raise NotSolved(...)\" 替换为你的答案（提示在该单元格上方的文字中）。"),
    },
}


def language() -> str:
    """``"zh"`` or ``"en"``: the language check messages are shown in (see the module docstring)."""
    given = os.environ.get(LANG_ENV, "").strip().lower()
    if given:
        return given if given in LANGUAGES else "en"
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session and Path(session).parent.name == "zh":
        return "zh"
    try:
        here = Path.cwd()
    except OSError:
        return "en"
    return "zh" if here.name == "zh" and here.parent.name in ("notebooks", "solutions") else "en"


def frame(key: str, lang: str, english: str, **values: str) -> str:
    """The framing text ``key`` in ``lang``, filled in with ``values``; ``english`` (the finished
    English text, returned as it is) when ``lang`` has none."""
    template = FRAMES.get(lang, {}).get(key)
    return english if template is None else template.format(**values)


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict:
    """``{"titles": {...}, "hints": {...}, "messages": {...}}`` for ``lang`` (empty for English or a
    language without a file). Empty strings are entries not translated yet."""
    path = _HERE / f"messages_{lang}.json"
    if lang == "en" or not path.is_file():
        return {"titles": {}, "hints": {}, "messages": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {key: {k: v for k, v in data.get(key, {}).items() if v} for key in ("titles", "hints", "messages")}


def _pattern(template: str) -> re.Pattern:
    """A regex matching the messages a template produces: literal text exact, each ``{n}`` any text."""
    parts = re.split(r"(\{\d+\})", template.replace("{{", "\0").replace("}}", "\1"))
    regex = "".join("(.*?)" if re.fullmatch(r"\{\d+\}", part)
                    else re.escape(part.replace("\0", "{").replace("\1", "}")) for part in parts)
    return re.compile(regex, re.DOTALL)


@lru_cache(maxsize=None)
def _compiled(lang: str) -> list[tuple[re.Pattern, str, int]]:
    """The message templates of ``lang``, most specific (most literal text) first."""
    entries = []
    for english, translated in catalog(lang)["messages"].items():
        literal = len(re.sub(r"\{\d+\}", "", english))
        entries.append((_pattern(english), translated, literal))
    return sorted(entries, key=lambda entry: -entry[2])


def translate(text: str | None, lang: str | None = None) -> str | None:
    """``text`` (a check's message or hint) in ``lang`` (default :func:`language`): the catalog's
    translation of the first template that matches it whole, else ``text`` unchanged."""
    lang = lang or language()
    if not text or lang == "en":
        return text
    for pattern, translated, _ in _compiled(lang):
        match = pattern.fullmatch(text)
        if match:
            values = [translate(value, lang) if value else value for value in match.groups()]
            return translated.format(*values)
    return text


def title(exercise_id: str, english: str, lang: str | None = None) -> str:
    """The exercise's title in ``lang`` (``english`` when it has no translation)."""
    lang = lang or language()
    return english if lang == "en" else catalog(lang)["titles"].get(exercise_id, english)


def hint(exercise_id: str, english: str | None, lang: str | None = None) -> str | None:
    """The exercise's default hint in ``lang`` (``english`` when it has no translation)."""
    lang = lang or language()
    if lang == "en" or english is None:
        return english
    return catalog(lang)["hints"].get(exercise_id, english)


# ---------------------------------------------------------------- what there is to translate

def _template(node: ast.AST) -> list[str]:
    """The templates an expression can produce: a string, an f-string, ``a + b`` of those, or
    ``x if c else y``; [] when it is built another way (a variable, a call)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value.replace("{", "{{").replace("}", "}}")]
    if isinstance(node, ast.JoinedStr):
        texts, count = [""], 0
        for value in node.values:
            if isinstance(value, ast.Constant):
                texts = [t + str(value.value).replace("{", "{{").replace("}", "}}") for t in texts]
            elif getattr(getattr(value.value, "func", None), "id", None) == "_verb":
                # core._verb(name) is "returned" or "has": one template for each (a translation
                # words them differently, and a placeholder there would match any word)
                texts = [t + verb for t in texts for verb in ("returned", "has")]
            else:
                texts = [t + "{" + str(count) + "}" for t in texts]
                count += 1
        return texts
    if isinstance(node, ast.IfExp):
        return _template(node.body) + _template(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if len(left) == 1 and len(right) == 1:
            shift = len(re.findall(r"(?<!\{)\{\d+\}", left[0]))
            renumbered = re.sub(r"(?<!\{)\{(\d+)\}", lambda m: "{" + str(int(m.group(1)) + shift) + "}", right[0])
            return [left[0] + renumbered]
    return []


def _returns_details(node: ast.FunctionDef) -> bool:
    """A check (decorated with ``register``) or :func:`mmcourse.exercises.predictions.recorded`:
    what it returns is shown in brackets after the passed line."""
    return node.name == "recorded" or any(
        isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register" for d in node.decorator_list)


def source_templates() -> dict:
    """What the checks' source asks to translate: ``{"titles": {id: english}, "hints": {id:
    english}, "messages": [templates]}`` from every ``register``, ``fail``, ``ExerciseFailed`` and
    ``hint=`` in the modules of this package."""
    titles, hints, messages = {}, {}, []
    for path in sorted(_HERE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _returns_details(node):
                messages += [t for ret in ast.walk(node) if isinstance(ret, ast.Return) and ret.value
                             for t in _template(ret.value)]
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "register" and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant):
                exercise_id = node.args[0].value
                titles[exercise_id] = (_template(node.args[1]) or [None])[0]
                for keyword in node.keywords:
                    if keyword.arg == "hint":
                        hints[exercise_id] = (_template(keyword.value) or [None])[0]
                continue
            if name in ("fail", "ExerciseFailed", "translate") and node.args:
                messages += _template(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "hint" and name != "register":
                    messages += _template(keyword.value)
    unbraced = {k: v.replace("{{", "{").replace("}}", "}") for k, v in titles.items() if v}
    hints = {k: v.replace("{{", "{").replace("}}", "}") for k, v in hints.items() if v}
    return {"titles": unbraced, "hints": hints, "messages": list(dict.fromkeys(messages))}


def template_problems(english: str, translated: str) -> list[str]:
    """Placeholders a translated template lacks or invents ({0}, {1}...), or braces that do not
    format; empty when the translation can replace the English."""
    want = set(re.findall(r"(?<!\{)\{(\d+)\}", english))
    got = set(re.findall(r"(?<!\{)\{(\d+)\}", translated))
    problems = []
    if want != got:
        problems.append(f"placeholders {sorted(got)} but the English has {sorted(want)}")
    try:
        translated.format(*(["x"] * (max(map(int, want | got), default=-1) + 1)))
    except (IndexError, KeyError, ValueError) as err:
        problems.append(f"does not format ({err}); write a literal brace as {{{{ or }}}}")
    return problems
