"""The report's content as plain data (sections of paragraphs, tables and images), and its two renderings:
a self-contained HTML page (images embedded as base64 PNG) and Markdown (images beside it as files)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    path: Path  # a PNG file
    alt: str  # what it shows, for a reader who cannot see it
    caption: str = ""


@dataclass
class Section:
    id: str  # the HTML anchor; the browser test checks every expected one is present
    title: str
    blocks: list = field(default_factory=list)  # str (a paragraph) | Table | Image

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self


CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f6; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: .9em; padding-top: .3em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; max-width: 800px; }
p.note { color: #555; }
"""


def to_html(title: str, intro: list[str], sections: list[Section]) -> str:
    toc = "".join(f"<li><a href='#{s.id}'>{html.escape(s.title)}</a></li>" for s in sections)
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", *(f"<p>{html.escape(text)}</p>" for text in intro),
             f"<nav><ol>{toc}</ol></nav>"]
    for section in sections:
        parts.append(f"<section id='{section.id}'><h2>{html.escape(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    return "\n".join(parts + ["</body></html>"]) + "\n"


def _html_block(block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in block.rows)
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
        return f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.alt)}'>{caption}</figure>"
    return f"<p>{html.escape(str(block))}</p>"


def to_markdown(title: str, intro: list[str], sections: list[Section], folder: Path) -> str:
    """Markdown for ``folder``/report.md: images linked by their path relative to that folder."""
    lines = [f"# {title}", "", *[line for text in intro for line in (text, "")]]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _markdown_block(block, folder) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_block(block, folder: Path) -> list[str]:
    if isinstance(block, Table):
        escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(map(escape, block.header)) + " |", "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(map(escape, row)) + " |" for row in block.rows]
        return lines + ([f"*{block.caption}*"] if block.caption else [])
    if isinstance(block, Image):
        link = Path(block.path).resolve().relative_to(folder.resolve()).as_posix()
        return [f"![{block.alt}]({link})"] + ([f"*{block.caption}*"] if block.caption else [])
    return [str(block)]
