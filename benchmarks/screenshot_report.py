"""Read a pipeline report in headless Chromium and keep small screenshots of its sections.

    python benchmarks/screenshot_report.py runs/folder-pipeline/report/report.html \
        --sections summary data generated-gan generated-diffusion --out benchmarks/figures/folder-report

Opens the report as a reader would (Debian's chromium through playwright, 1200 px wide), fails on a
console error, a page error or an image that did not decode, and writes one JPEG per named section
(<out>-<section>.jpg, scaled down to fit MAX_WIDTH × MAX_HEIGHT px) for RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

MAX_WIDTH, MAX_HEIGHT, QUALITY = 700, 1000, 60


def capture(report: Path, sections: list[str], out: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")
    problems, written = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                               ".map(i => i.alt)")
        for section in sections:
            element = page.query_selector(f"section#{section}")
            if element is None:
                problems.append(f"no section '{section}' in the report")
                continue
            written.append(_save_small(element.screenshot(type="png"), Path(f"{out}-{section}.jpg")))
        browser.close()
    if problems or broken:
        raise SystemExit(f"the report did not read cleanly: {problems + [f'image not decoded: {a}' for a in broken]}")
    return written


def _save_small(png: bytes, path: Path) -> Path:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((MAX_WIDTH, MAX_HEIGHT))  # keeps the aspect ratio: a long section comes out narrower
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=QUALITY)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--sections", nargs="+", default=["summary", "generated-gan", "generated-diffusion"])
    parser.add_argument("--out", required=True, help="path prefix of the JPEGs")
    args = parser.parse_args()
    for path in capture(args.report, args.sections, args.out):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    sys.exit(main())
