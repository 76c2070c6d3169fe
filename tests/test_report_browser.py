"""The pipeline's report.html opened in a real browser (headless Chromium through Playwright): every
image decodes, nothing is logged as an error, every section is there.

Needs Debian's chromium (``.ci/run`` installs it when missing) and the playwright package
(requirements.txt); elsewhere the test skips and says which is missing.
"""

from __future__ import annotations

import shutil

import pytest

from visrep.pipeline.report_sections import SECTION_IDS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")  # session, like tiny_pipeline, and requested before it: a machine without a
def sync_playwright():              # browser skips before building the pipeline for this test
    """Playwright's entry point, or a skip whose reason (shown by make test, -rs) says how to enable the check."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser check: the playwright package is not installed (pip install -r requirements.txt)")
    if CHROMIUM is None:
        pytest.skip("browser check: no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    return sync_playwright


def test_report_renders_in_headless_chromium(sync_playwright, tiny_pipeline, tmp_path):
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto((tiny_pipeline / "report" / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        sections = page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert len(images) >= 9
    assert [alt for alt, complete, width in images if not (complete and width > 0)] == []
    assert set(SECTION_IDS) | {"generated-gan", "generated-diffusion"} <= set(sections)
    assert (tmp_path / "report.png").stat().st_size > 10_000
