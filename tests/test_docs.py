"""The documentation site: `mkdocs build --strict` succeeds (warnings are errors), the command-line page is the
parser's help, the API page carries every public name's docstring, the committed notebooks are pages with their
Grad-CAM figures, and a real browser opens the built notebook page."""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
NOTEBOOK_PAGE = "notebooks/01_2024-05-13_baseline.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stderr, r.stderr[-3000:]
    return out


def test_every_page_of_the_nav_is_built(site):
    nav = re.findall(r":\s*([\w/.\-]+\.(?:md|ipynb))\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 20
    for page in nav:
        assert (site / re.sub(r"\.(md|ipynb)$", ".html", page)).is_file(), page


def test_the_command_line_page_is_generated_from_the_parser(site):
    from pneumolib.cli import build_parser, reference_markdown

    html = (site / "cli.html").read_text()
    assert "cli-reference" not in html  # the marker was replaced
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        assert f"usage: python -m pneumolib {name}" in html, name
        for action in parser._actions:
            for opt in action.option_strings:
                assert opt in html, (name, opt)
    assert "## `predict`" in reference_markdown()


def test_the_api_page_documents_every_public_name(site):
    import pneumolib

    html = (site / "api.html").read_text()
    for name in pneumolib.__all__:
        if name != "__version__":
            assert f"pneumolib.api.{name}" in html, name
    # Google-style sections parsed into tables, not shown as raw text
    assert html.count('doc-section-title">Returns:') >= 5 and html.count('doc-section-title">Parameters:') >= 5


def test_the_notebooks_are_pages_with_their_outputs(site):
    page = (site / NOTEBOOK_PAGE).read_text()
    assert "data:image/png;base64" in page or "data:image/jpeg;base64" in page  # the committed figures
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert (site / "notebooks" / nb.with_suffix(".html").name).is_file(), nb.name


def test_every_docs_page_the_readme_links_exists():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)\)", readme)
    assert len(links) >= 10
    for link in links:
        assert (REPO / link).is_file(), link


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) < 250


@pytest.mark.browser
def test_a_browser_opens_the_built_notebook_page(site, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"the docs browser test needs Debian's chromium at {CHROMIUM}; .ci/run installs it")
        pytest.skip(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/{NOTEBOOK_PAGE}", timeout=120_000)
            page.wait_for_load_state("load", timeout=120_000)
            assert "baseline" in page.title().lower()
            text = page.inner_text("body")
            assert "Grad-CAM" in text
            # the committed figures are shown: at least one image decoded by the browser
            loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
            assert loaded >= 1
            if os.environ.get("PNEUMOLIB_ARTIFACTS"):
                page.screenshot(path=str(Path(os.environ["PNEUMOLIB_ARTIFACTS"]) / "docs_notebook_page.png"))
            browser.close()
    finally:
        server.shutdown()
