"""The course website (mmcourse.tools.site, site/): built once per module from the solution notebooks
with their committed outputs, offline; every notebook has a page, the navigation groups pages by
part, every internal link and local asset resolves, and no page loads a script or style from the
internet. The answers: folded behind a "Show solution N.M" <details> toggle (opened with the
keyboard in headless Chromium when Playwright and Chromium are there), or, in the build without
solutions (built once more), absent from every file of the site while the lesson outputs stay.
Both editions: the Chinese pages (solutions/zh) have their part, a language switch and their
answers folded or left out in the same way.
About 90 s on 2 cores per build (both editions)."""
from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from mmcourse.notebook_format import CODE_BEGIN, CODE_END, MD_REGION_RE, exercise_id
from mmcourse.tools.site import build_site, prune_toc

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
ZH_NOTEBOOKS = sorted((ROOT / "solutions" / "zh").glob("[0-9][0-9]_*.ipynb"))
# Both editions: (solution notebook, its pages' sub-folder, the label of its answers' toggles)
EDITIONS = [(p, "", "Show solution") for p in NOTEBOOKS] + \
    [(p, "zh/", "显示参考答案") for p in ZH_NOTEBOOKS]
# The part each notebook number belongs to (the caption in site/_toc.yml starts with it).
PARTS = {0: "Part 0-1", 1: "Part 0-1", 2: "Part 0-1", 3: "Part 0-1",
         4: "Part 2", 5: "Part 2", 6: "Part 2", 7: "Part 3", 8: "Part 3",
         9: "Part 4", 10: "Part 4", 11: "Part 4"}
# Tags whose src/href the browser loads by itself: none of them may point to the internet.
LOADED = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
          "audio": "src", "video": "src", "embed": "src", "object": "data"}
# The one inline script allowed to name a CDN: sphinx-thebe's constant (see the test below).
DORMANT_THEBE = re.compile(r'const THEBE_JS_URL = "https://unpkg\.com/thebe@[0-9.]+/lib/index\.js";'
                           r'[^<]*')
CDN = re.compile(r"cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis|mathjax\.org|require\.js", re.I)


class _Page(HTMLParser):
    """Collects ids, links (a/area href) and loaded resources (LOADED) of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.loaded: list[tuple[str, str]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag in ("a", "area") and attrs.get("href") is not None:
            self.links.append(attrs["href"])
        if tag in LOADED and attrs.get(LOADED[tag]):
            self.loaded.append((tag, attrs[LOADED[tag]]))
        self._in_script = tag == "script" and not attrs.get("src")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    result = build_site(ROOT, tmp_path_factory.mktemp("site"), quiet=True)
    pages = {}
    for path in sorted(result["html"].rglob("*.html")):
        if path.relative_to(result["html"]).parts[0] == "_static":
            continue  # the themes' Jinja macro files, copied along; not pages
        parser = _Page()
        parser.feed(path.read_text(encoding="utf-8"))
        pages[path] = parser
    result["pages"] = pages
    return result


def _external(url: str) -> bool:
    """A URL the browser would fetch from a server (data: and file-relative URLs are local)."""
    return urlsplit(url).scheme in ("http", "https", "ftp", "ws", "wss") or url.startswith("//")


def _short(url: str) -> str:
    return url if len(url) < 120 else url[:100] + "..."


def test_build_succeeds_without_warnings(site):
    assert site["index"].is_file()
    assert site["warnings"] == [], "the site build warned:\n" + "\n".join(site["warnings"])
    assert "Executing" not in site["log"], "the build executed notebooks; it must only render " \
                                           "their committed outputs (execute_notebooks: off)"


def test_every_solution_notebook_has_a_page_with_its_outputs(site):
    assert NOTEBOOKS, "no solution notebooks found"
    for nb_path in NOTEBOOKS:
        page = site["html"] / "solutions" / f"{nb_path.stem}.html"
        assert page.is_file(), f"no page for {nb_path.name}"
        text = page.read_text(encoding="utf-8")
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        title = next((line[2:].strip() for cell in nb["cells"] if cell["cell_type"] == "markdown"
                      for line in "".join(cell["source"]).splitlines() if line.startswith("# ")),
                     None)
        assert title and title.split("·")[-1].strip() in text, f"{page.name}: title {title!r} missing"
        pngs = sum("image/png" in out.get("data", {})
                   for cell in nb["cells"] for out in cell.get("outputs", []))
        images = len(re.findall(r'<img [^>]*src="\.\./_images/', text))
        assert images >= pngs, f"{page.name}: {images} images on the page, {pngs} in the notebook"


def test_intro_dataset_card_and_guides_are_pages(site):
    html = site["html"]
    assert (html / "README.html").is_file() and "README.html" in site["index"].read_text()
    assert (html / "datasets" / "README.html").is_file()
    for name in ("CONTRIBUTING", "INSTRUCTORS", "BENCHMARKS"):
        if (ROOT / f"{name}.md").is_file():
            assert (html / f"{name}.html").is_file(), f"{name}.md has no page"
    # the README's links to the other documents point to their pages
    assert 'href="datasets/README.html"' in (html / "README.html").read_text(encoding="utf-8")


def _navigation(page_html: str) -> dict[str, list[str]]:
    """caption -> page links of the left sidebar, in order."""
    nav = page_html.split('class="bd-links', 1)[-1].split("</nav>", 1)[0]
    parts: dict[str, list[str]] = {}
    chunks = re.split(r'<span class="caption-text">(.*?)</span>', nav)
    for caption, body in zip(chunks[1::2], chunks[2::2]):
        parts[caption] = re.findall(r'class="reference internal" href="([^"#]*)', body)
    return parts


def test_navigation_groups_the_notebooks_by_part(site):
    nav = _navigation((site["html"] / "README.html").read_text(encoding="utf-8"))
    assert len(nav) >= 3, f"expected captions by part in the sidebar, got {list(nav)}"
    for nb_path in NOTEBOOKS:
        number = int(nb_path.name[:2])
        href = f"solutions/{nb_path.stem}.html"
        captions = [caption for caption, links in nav.items() if href in links]
        assert len(captions) == 1, f"{nb_path.name} is in {captions or 'no part'} of the " \
                                   f"navigation; add it to a part in site/_toc.yml"
        expected = PARTS.get(number)
        if expected:
            assert captions[0].startswith(expected), \
                f"{nb_path.name} is under {captions[0]!r}, expected {expected!r}"
    # the parts come in course order
    english = lambda h: h.startswith("solutions/") and not h.startswith("solutions/zh/")  # noqa: E731
    firsts = [min(int(Path(h).name[:2]) for h in links if english(h))
              for links in nav.values() if any(english(h) for h in links)]
    assert firsts == sorted(firsts), f"parts out of order: {list(nav)}"
    # every notebook page carries the same navigation
    for nb_path in NOTEBOOKS:
        page_nav = _navigation((site["html"] / "solutions" / f"{nb_path.stem}.html")
                               .read_text(encoding="utf-8"))
        assert list(page_nav) == list(nav), f"{nb_path.stem}.html: sidebar differs"


def test_the_chinese_edition_has_its_part_and_a_language_switch(site):
    assert ZH_NOTEBOOKS, "no Chinese notebooks in solutions/zh"
    html = site["html"]
    nav = _navigation((html / "README.html").read_text(encoding="utf-8"))
    [caption] = [c for c in nav if c.startswith("中文版")]
    for name in ("README.zh-CN.html", "INSTRUCTORS.zh-CN.html", "translations/zh/GLOSSARY.html"):
        assert name in nav[caption], f"{name} is not in the Chinese part: {nav[caption]}"
    for nb_path in ZH_NOTEBOOKS:
        assert f"solutions/zh/{nb_path.stem}.html" in nav[caption]
        english = (html / "solutions" / f"{nb_path.stem}.html").read_text(encoding="utf-8")
        chinese = (html / "solutions" / "zh" / f"{nb_path.stem}.html").read_text(encoding="utf-8")
        assert f'href="zh/{nb_path.stem}.html"' in english, f"{nb_path.stem}: no link to 中文"
        assert f'href="../{nb_path.stem}.html"' in chinese, f"{nb_path.stem}: no link to English"
        title = next(line[2:] for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
                     if cell["cell_type"] == "markdown"
                     for line in "".join(cell["source"]).splitlines() if line.startswith("# "))
        assert title.split("·")[-1].strip() in chinese, f"{nb_path.stem}: Chinese title missing"


def test_internal_links_and_assets_resolve(site):
    html = site["html"].resolve()
    broken = []
    for path, page in site["pages"].items():
        urls = [("a", u) for u in page.links] + page.loaded
        for tag, url in urls:
            if not url or _external(url) or urlsplit(url).scheme:  # mailto:, data:, ...
                continue
            parts = urlsplit(url)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.is_relative_to(html) or not target.is_file():
                broken.append(f"{path.relative_to(html)}: <{tag}> {_short(url)}")
                continue
            if parts.fragment and target.suffix == ".html" and target in site["pages"]:
                if unquote(parts.fragment) not in site["pages"][target].ids:
                    broken.append(f"{path.relative_to(html)}: <{tag}> {url} (no such anchor)")
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:40])


def test_no_page_loads_anything_from_the_internet(site):
    html = site["html"]
    external = []
    for path, page in site["pages"].items():
        for tag, url in page.loaded:
            if _external(url):
                external.append(f"{path.relative_to(html)}: <{tag}> {_short(url)}")
        for script in page.inline_scripts:
            if DORMANT_THEBE.fullmatch(script.strip()):
                continue
            if CDN.search(script):
                external.append(f"{path.relative_to(html)}: inline script mentions "
                                f"{CDN.search(script).group(0)}")
    assert not external, "pages load from the internet:\n" + "\n".join(external[:40])
    # sphinx-thebe (always loaded by Jupyter Book) defines THEBE_JS_URL, fetched only by a
    # "launch thebe" button: there must be none (launch_buttons.thebe is off)
    for path in site["pages"]:
        assert "thebe-launch-button" not in path.read_text(encoding="utf-8"), \
            f"{path.relative_to(html)} has a thebe launch button, which loads thebe from a CDN"
    for css in html.rglob("*.css"):
        urls = re.findall(r"""(?:@import\s+|url\()\s*["']?(https?:)?//""", css.read_text(
            encoding="utf-8", errors="replace"))
        assert not urls, f"{css.relative_to(html)} imports from the internet"


def test_mathjax_is_served_locally(site):
    html = site["html"]
    pages_with_math = [p for p in site["pages"] if 'class="math' in p.read_text(encoding="utf-8")]
    assert pages_with_math, "expected math in the notebooks"
    for path in pages_with_math:
        srcs = [u for tag, u in site["pages"][path].loaded if "MathJax.js" in u]
        assert srcs, f"{path.name}: math but no MathJax"
        config = dict(p.split("=", 1) for p in urlsplit(srcs[0]).query.split("&") if "=" in p)
        assert (html / "_static" / "mathjax" / "config" / f"{config['config']}.js").is_file()
    # no widget state is stored, so no page needs the widget manager
    for nb_path in NOTEBOOKS:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        assert "application/vnd.jupyter.widget-state+json" not in \
            nb.get("metadata", {}).get("widgets", {}), \
            f"{nb_path.name} stores widget state: vendor @jupyter-widgets/html-manager for the site"


def test_prune_toc_drops_missing_entries(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "00_a.ipynb").write_text("{}")
    (tmp_path / "README.md").write_text("# x")
    toc = yaml.safe_load("""
format: jb-book
root: README
parts:
  - caption: Part 1
    chapters: [{glob: "solutions/0[0-3]_*"}, {file: missing}]
  - caption: Part 2
    chapters: [{glob: "solutions/0[4-6]_*"}]
""")
    pruned, dropped = prune_toc(toc, tmp_path)
    assert [p["caption"] for p in pruned["parts"]] == ["Part 1"]
    assert pruned["parts"][0]["chapters"] == [{"glob": "solutions/0[0-3]_*"}]
    assert any("missing" in d for d in dropped) and any("Part 2" in d for d in dropped)


# --- The answers: folded by default, absent from the build without solutions ---------------------

MD_REGION_BODY = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->(.*?)<!--\s*END SOLUTION\s*-->", re.S)


def _output_lines(cell: dict) -> list[str]:
    lines = []
    for out in cell.get("outputs", []):
        text = out.get("text") or out.get("data", {}).get("text/plain") or ""
        lines += ("".join(text) if isinstance(text, list) else text).splitlines()
    return lines


def _answers(nb_path: Path) -> dict:
    """What only the answers of a solution notebook hold: ``code`` (stripped lines found only in
    solution regions), ``written`` (lines of written answers, 20+ characters, without markup that
    renders differently), ``outputs`` (output lines found only in exercise cells) and
    ``exercises`` (ids of the cells with a solution region)."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    inside, outside, exercise_outputs = set(), set(), set()
    written, exercises = [], []
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for body in MD_REGION_BODY.findall(source):
                written += [line.strip() for line in body.splitlines()
                            if len(line.strip()) >= 20 and not re.search(r"[\[\]$\\<>|]", line)]
            outside.update(line.strip() for line in MD_REGION_RE.sub("", source).splitlines())
            continue
        region = False
        for line in source.splitlines():
            if line.strip() in (CODE_BEGIN, CODE_END):
                region = line.strip() == CODE_BEGIN
                continue
            (inside if region else outside).add(line.strip())
        if exercise_id(cell):
            exercise_outputs.update(line.strip() for line in _output_lines(cell))
            if CODE_BEGIN in source:
                exercises.append(exercise_id(cell))
        else:
            outside.update(line.strip() for line in _output_lines(cell))
    return {"code": sorted(inside - outside - {""}), "written": written,
            "outputs": sorted(exercise_outputs - outside - {""}), "exercises": exercises}


def _flat(text: str) -> str:
    """Text with emphasis and code marks dropped, typographic quotes made straight (the HTML's
    smart quotes) and whitespace collapsed (Markdown vs its HTML)."""
    text = text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}))
    return " ".join(re.sub(r"[*`]", "", text).split())


class _Text(HTMLParser):
    """The text of a page (scripts and styles left out), split into what sits inside a <details>
    element (folded) and outside it (open), and the attributes and text of every <summary>."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.folded: list[str] = []
        self.summaries: list[tuple[dict, str]] = []
        self._depth = self._skip = 0
        self._summary: list | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self._depth += tag == "details"
        self._skip += tag in ("script", "style")
        if tag == "summary":
            self._summary = [dict(attrs), ""]

    def handle_endtag(self, tag):
        self._depth -= tag == "details"
        self._skip -= tag in ("script", "style")
        if tag == "summary" and self._summary is not None:
            self.summaries.append((self._summary[0], " ".join(self._summary[1].split())))
            self._summary = None

    def handle_data(self, data):
        if self._skip:
            return
        (self.folded if self._depth else self.open).append(data)
        if self._summary is not None:
            self._summary[1] += data

    @staticmethod
    def lines(chunks: list[str]) -> set[str]:
        return {line.strip() for line in "".join(chunks).splitlines()}


def test_every_notebook_has_answers_to_hide():
    """Guards the tests below against passing on nothing."""
    found = [_answers(p) for p in NOTEBOOKS]
    assert all(a["exercises"] and a["code"] for a in found)
    assert any(a["written"] for a in found) and any(a["outputs"] for a in found)


def test_answers_are_folded_behind_a_show_solution_toggle(site):
    for nb_path, sub, show in EDITIONS:
        answers = _answers(nb_path)
        text = _Text((site["html"] / "solutions" / f"{sub}{nb_path.stem}.html").read_text(
            encoding="utf-8"))
        open_lines, folded_lines = _Text.lines(text.open), _Text.lines(text.folded)
        for line in answers["code"] + answers["outputs"]:
            assert line not in open_lines, f"{nb_path.stem}: answer line {line!r} is in the open"
            assert line in folded_lines, f"{nb_path.stem}: answer line {line!r} is not on the page"
        open_flat, folded_flat = _flat("".join(text.open)), _flat("".join(text.folded))
        for line in answers["written"]:
            assert _flat(line) not in open_flat and _flat(line) in folded_flat, \
                f"{nb_path.stem}: written answer {line!r} is not folded"
        labels = [label for _, label in text.summaries]
        for ident in answers["exercises"]:
            toggle = re.compile(rf"^{show} {re.escape(ident)}(?![\d.])")
            assert any(toggle.match(label) for label in labels), \
                f"{sub}{nb_path.stem}: no '{show} {ident}' toggle among {labels}"
        # the summary's visible text is its accessible name (no aria-label overriding it)
        assert not [attrs for attrs, _ in text.summaries if "aria-label" in attrs]


def test_the_download_of_a_folded_page_is_the_solution_notebook(site):
    for nb_path, sub, _ in EDITIONS:
        download = site["html"] / "_sources" / "solutions" / f"{sub}{nb_path.name}"
        nb = json.loads(download.read_text(encoding="utf-8"))
        original = json.loads(nb_path.read_text(encoding="utf-8"))
        assert [c["source"] for c in nb["cells"]] == [c["source"] for c in original["cells"]]


@pytest.fixture(scope="module")
def student_site(tmp_path_factory):
    return build_site(ROOT, tmp_path_factory.mktemp("student-site"), solutions=False, quiet=True)


def test_site_without_solutions_has_no_answer_anywhere(student_site):
    html = student_site["html"]
    assert student_site["warnings"] == [], "\n".join(student_site["warnings"])
    assert not (html / "solutions").exists()
    pages = {p: p.read_text(encoding="utf-8") for p in html.rglob("*.html")}
    sources = {p: p.read_text(encoding="utf-8") for p in (html / "_sources").rglob("*.ipynb")}
    every_file = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                           for p in html.rglob("*") if p.is_file() and p.suffix in
                           (".html", ".js", ".ipynb", ".txt", ".md", ".json"))
    assert not re.search(r"Exercise \d+\.\d+ passed|练习 \d+\.\d+ 通过", every_file), \
        "a check verdict is on the site"
    flat = _flat(every_file)   # once: the site's text is the same for every notebook below
    for nb_path, sub, _ in EDITIONS:
        answers = _answers(nb_path)
        page = html / "notebooks" / f"{sub}{nb_path.stem}.html"
        assert page.is_file(), f"no page for {sub}{nb_path.name}"
        text = _Text(pages[page])
        lines = _Text.lines(text.open + text.folded)
        download = json.loads(sources[html / "_sources" / "notebooks" / f"{sub}{nb_path.name}"])
        lines |= {line.strip() for cell in download["cells"]
                  for line in "".join(cell["source"]).splitlines() + _output_lines(cell)}
        leaked = [line for line in answers["code"] + answers["outputs"] if line in lines]
        assert not leaked, f"{nb_path.stem}: answer lines on the site: {leaked[:5]}"
        leaked = [line for line in answers["written"] if _flat(line) in flat]
        assert not leaked, f"{nb_path.stem}: written answers on the site: {leaked[:3]}"
        for ident in answers["exercises"]:
            assert f'raise NotSolved("{ident}")' in lines, f"{page.name}: no stub for {ident}"


def test_site_without_solutions_keeps_the_lesson_outputs(student_site):
    html = student_site["html"]
    nav = _navigation((html / "README.html").read_text(encoding="utf-8"))
    linked = {h for links in nav.values() for h in links}
    for nb_path in NOTEBOOKS:
        assert f"notebooks/{nb_path.stem}.html" in linked, f"{nb_path.stem} not in the navigation"
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        text = (html / "notebooks" / f"{nb_path.stem}.html").read_text(encoding="utf-8")
        pngs = sum("image/png" in out.get("data", {}) for cell in nb["cells"]
                   if not exercise_id(cell) for out in cell.get("outputs", []))
        images = len(re.findall(r'<img [^>]*src="\.\./_images/', text))
        assert images >= pngs, f"{nb_path.stem}: {images} images on the page, {pngs} lesson ones"
        lesson = [line for cell in nb["cells"] if not exercise_id(cell)
                  for out in cell.get("outputs", []) if out["output_type"] == "stream"
                  for line in "".join(out["text"]).splitlines() if len(line.strip()) > 10]
        page_lines = _Text.lines(_Text(text).open)
        missing = [line for line in lesson if line.strip() not in page_lines]
        assert not missing, f"{nb_path.stem}: lesson outputs missing: {missing[:3]}"


@pytest.mark.browser
def test_a_solution_toggle_opens_with_the_keyboard(site):
    """In headless Chromium, from the file system (offline): the answer of exercise N.1 is hidden,
    its summary takes the focus with Tab, Enter shows the answer and Space hides it again."""
    if os.environ.get("MMCOURSE_SKIP_BROWSER") == "1":
        pytest.skip("browser test skipped: MMCOURSE_SKIP_BROWSER=1")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    from browser_support import CHROMIUM_ARGS, find_chromium
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (scripts/setup.sh installs it as root)")
    nb_path = NOTEBOOKS[0]
    answers = _answers(nb_path)
    ident = answers["exercises"][0]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("http*://**", lambda route: route.abort())  # offline: nothing fetched
            page.goto((site["html"] / "solutions" / f"{nb_path.stem}.html").as_uri())
            summary = page.locator("summary", has_text=f"Show solution {ident}").first
            code = page.locator("details", has=summary).locator("pre").first
            assert not code.is_visible(), "the answer is visible before the toggle is opened"
            summary.scroll_into_view_if_needed()
            # focus the element just before the summary, then Tab onto the summary itself
            summary.evaluate("s => { const b = document.createElement('button');"
                             " b.id = 'before'; s.closest('details').before(b); b.focus(); }")
            page.keyboard.press("Tab")
            assert summary.evaluate("s => document.activeElement === s"), "Tab skips the toggle"
            page.keyboard.press("Enter")
            assert code.is_visible(), "Enter did not open the toggle"
            assert any(line in code.inner_text() for line in answers["code"])
            page.keyboard.press("Space")
            assert not code.is_visible(), "Space did not fold the answer again"
        finally:
            browser.close()
