"""A report as a list of blocks, rendered two ways: Markdown (printed, ``report.md``) and one HTML page.

The HTML page is self-contained (styles inline, figures as base64 ``data:`` URIs), so it can be mailed,
opened from disk or shown by MLflow's artifact viewer, which renders an HTML artifact on its own.
Block text may hold Markdown code spans (`` `name` ``); nothing else of Markdown is interpreted.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Caveat:
    """A caveat that must stand out (ignored runs, a table that could not be computed)."""

    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame  # cells already formatted as text
    index_label: str
    caption: str = ""  # HTML only: Markdown shows the table bare, the text around it says what it is


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Figures:
    """Several figures under one line of text (one figure per metric, say)."""

    intro: str
    paths: Sequence[Path]


@dataclass(frozen=True)
class Notes:
    items: Sequence[str]
    title: str = "Notes"


Block = Heading | Text | Caveat | Table | Figure | Figures | Notes


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


# --------------------------------------------------------------------------- Markdown


def markdown_table(df: pd.DataFrame, index_label: str) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings (no tabulate dependency)."""
    header = [index_label, *map(str, df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(df.columns)) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx), *(str(v) for v in row)]) + " |")
    return "\n".join(lines)


def _markdown_block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Caveat):
        return f"> warning: {block.text}"
    if isinstance(block, Table):
        return markdown_table(block.frame, block.index_label)
    if isinstance(block, Figure):
        return f"{block.caption}: `{block.path.name}`" if block.caption else f"`{block.path.name}`"
    if isinstance(block, Figures):
        return block.intro + ": " + ", ".join(f"`{p.name}`" for p in block.paths)
    if isinstance(block, Notes):
        return f"### {block.title}\n\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(block.items, 1))
    raise TypeError(f"not a report block: {block!r}")


def to_markdown(blocks: Iterable[Block]) -> str:
    """The blocks as Markdown, one blank line between blocks; figures are named, not embedded."""
    return "\n\n".join(_markdown_block(b) for b in blocks) + "\n"


# --------------------------------------------------------------------------- HTML

_CODE = re.compile(r"`([^`]+)`")
_NUMERIC = re.compile(r"^[-+]?(\d|\.\d|inf|n/a|\[)")

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; margin: 2rem auto;
       max-width: 78rem; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.25rem; margin-top: 2.4rem;
  border-bottom: 1px solid #d9dde5; padding-bottom: .2rem; } h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-variant-numeric: tabular-nums; font-size: .93em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0 .4rem; }
.scroll { overflow-x: auto; max-width: 100%; }
th, td { border-bottom: 1px solid #e3e6ec; padding: .25rem .55rem; white-space: nowrap; }
th { background: #f4f6f9; text-align: right; white-space: normal; min-width: 3.5rem; }
th:first-child, td:first-child { text-align: left; }
td.num { text-align: right; } tbody tr:hover { background: #f8fafc; }
code { background: #f1f3f6; padding: 0 .25rem; border-radius: 3px; font-size: .92em; }
.warning { border-left: 4px solid #d08a00; background: #fff8e6; padding: .4rem .8rem; }
figure { margin: .6rem 0 1.4rem; } figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #59606e; font-size: .9rem; } .figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { flex: 0 1 36rem; } ol { padding-left: 1.4rem; } li { margin: .25rem 0; }
"""


def _inline(text: str) -> str:
    """Escape text for HTML, turning Markdown code spans into ``<code>``."""
    out, last = [], 0
    for m in _CODE.finditer(text):
        out += [html.escape(text[last:m.start()]), f"<code>{html.escape(m.group(1))}</code>"]
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def data_uri(path: Path) -> str:
    kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: only PNG, SVG and JPEG figures can be embedded")
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_table(df: pd.DataFrame, index_label: str, caption: str = "") -> str:
    head = "".join(f"<th>{_inline(str(c))}</th>" for c in [index_label, *df.columns])
    rows = []
    for idx, row in df.iterrows():
        cells = [f"<td>{_inline(str(idx))}</td>"]
        for v in row:
            text = str(v)
            cls = ' class="num"' if _NUMERIC.match(text) else ""
            cells.append(f"<td{cls}>{_inline(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{_inline(caption)}</caption>" if caption else ""
    # Wide tables scroll on their own instead of widening the page (MLflow shows the page in a pane).
    return (f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _figure(path: Path, caption: str) -> str:
    alt = html.escape(caption or path.stem, quote=True)
    return (f'<figure><img src="{data_uri(path)}" alt="{alt}" data-file="{html.escape(path.name, quote=True)}">'
            f"<figcaption>{_inline(caption or path.name)}</figcaption></figure>")


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        level = min(max(block.level, 1), 6)
        return f"<h{level}>{_inline(block.text)}</h{level}>"
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Caveat):
        return f'<p class="warning">warning: {_inline(block.text)}</p>'
    if isinstance(block, Table):
        return html_table(block.frame, block.index_label, block.caption)
    if isinstance(block, Figure):
        return _figure(block.path, block.caption)
    if isinstance(block, Figures):
        inner = "".join(_figure(p, p.stem) for p in block.paths)
        return f'<p>{_inline(block.intro)}:</p><div class="figures">{inner}</div>'
    if isinstance(block, Notes):
        items = "".join(f"<li>{_inline(n)}</li>" for n in block.items)
        return f"<h3>{_inline(block.title)}</h3><ol>{items}</ol>"
    raise TypeError(f"not a report block: {block!r}")


def to_html(doc: Document) -> str:
    """One self-contained HTML page: no external styles, scripts or images."""
    body = "\n".join(_html_block(b) for b in doc.blocks)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
