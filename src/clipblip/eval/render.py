"""The report's blocks (blocks.py) as markdown and as one self-contained HTML page (styles inline, images embedded).

Every text is escaped for its format: a caption a model wrote can never become markup in a viewer.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .blocks import TITLE, Block, Code, Heading, Image, Paragraph, Table

CSS = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}img.plot{max-width:100%}
img.example{width:192px;image-rendering:pixelated;border:1px solid #ccc}"""


def _md_text(s) -> str:
    # Backslash-escaped '<' is literal in CommonMark: a caption can never become an HTML tag in a viewer.
    return str(s).replace("\\", "\\\\").replace("<", "\\<").replace("\n", " ")


def _md_row(cells) -> str:
    return "| " + " | ".join(_md_text(c).replace("|", "\\|") for c in cells) + " |"


def _md_block(b: Block) -> str:
    match b:
        case Heading():
            return "#" * b.level + " " + _md_text(b.text)
        case Paragraph():
            return _md_text(b.text)
        case Code():
            return "```\n" + b.text + "\n```"
        case Image():
            return f"![{_md_text(b.alt)}]({b.path})"
        case Table():
            return "\n".join([_md_row(b.headers), "|" + "---|" * len(b.headers)] + [_md_row(row) for row in b.rows])
    raise TypeError(f"not a report block: {b!r}")


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


def _data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _html_image(b: Image, out_dir: Path) -> str:
    uri = _data_uri(out_dir / b.path)
    if uri is None:
        return f"<p>(image missing: {html.escape(str(b.path))})</p>"
    return f'<img class="{b.css_class}" alt="{html.escape(b.alt)}" src="{uri}">'


def _html_table(b: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in b.headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_block(b: Block, out_dir: Path) -> str:
    match b:
        case Heading():
            return f"<h{b.level}>{html.escape(str(b.text))}</h{b.level}>"
        case Paragraph():
            return f"<p>{html.escape(str(b.text))}</p>"
        case Code():
            return f"<pre><code>{html.escape(b.text)}</code></pre>"
        case Image():
            return _html_image(b, out_dir)
        case Table():
            return _html_table(b)
    raise TypeError(f"not a report block: {b!r}")


def to_html(blocks: list[Block], out_dir: Path) -> str:
    """One page with its styles inline and its images (paths relative to out_dir) embedded as data URIs."""
    body = "\n".join(_html_block(b, Path(out_dir)) for b in blocks)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(TITLE)}</title>'
            f"<style>{CSS}</style></head><body>\n" + body + "\n</body></html>\n")
