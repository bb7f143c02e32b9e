"""Render a report (sections of text, preformatted blocks, tables and images) as HTML and as Markdown.

The HTML page is self-contained: images are embedded as base64 data URIs and the style sheet is inline, so
the single file can be mailed, attached to an issue or opened offline. The Markdown twin links the same
images by relative path (it is meant to be read next to the run directory, e.g. on a code host).
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class Text:
    text: str


@dataclass
class Pre:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: Path
    alt: str


Block = Text | Pre | Table | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
pre { background: #f5f5f5; padding: .8em; overflow-x: auto; font-size: 13px; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: left; font-size: 14px; }
th { background: #eee; }
figure { margin: 1em 0; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
"""


def data_uri(path: Path) -> str:
    """The file as a base64 data URI (its MIME type from the suffix)."""
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Pre):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    alt = html.escape(block.alt)
    return f'<figure><img src="{data_uri(block.path)}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def render_html(title: str, sections: list[Section]) -> str:
    """One HTML page with every image inlined; nothing is fetched from elsewhere."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [_html_block(block) for block in section.blocks]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block, md_dir: Path) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Pre):
        return f"```\n{block.text}\n```"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(map(_md_cell, block.header)) + " |", "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
        return "\n".join(lines)
    link = Path(os.path.relpath(block.path.resolve(), md_dir.resolve())).as_posix()
    return f"![{block.alt}]({link})"


def render_markdown(title: str, sections: list[Section], md_dir: Path) -> str:
    """The same report as Markdown; images are linked relative to `md_dir` (where the .md file goes)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += [_md_block(block, md_dir) for block in section.blocks]
    return "\n\n".join(parts) + "\n"
