"""A report's blocks rendered as Markdown and as one self-contained HTML page."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from analysis.document import (
    Caveat,
    Document,
    Figure,
    Figures,
    Heading,
    Notes,
    Table,
    Text,
    data_uri,
    markdown_table,
    to_html,
    to_markdown,
)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class _Page(HTMLParser):
    """The tags, the text per tag and the attributes of a page, to check its structure."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, dict]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag not in ("meta", "img"):
            self._open.append(tag)

    def handle_endtag(self, tag):
        assert self._open and self._open[-1] == tag, f"</{tag}> closes <{self._open[-1:]}>"
        self._open.pop()

    def handle_data(self, data):
        if self._open and data.strip():
            self.text.setdefault(self._open[-1], []).append(data.strip())


@pytest.fixture
def doc(tmp_path) -> Document:
    fig = tmp_path / "acc_paired.png"
    fig.write_bytes(PNG)
    frame = pd.DataFrame({"T": ["2.5", "n/a"], "CI95%": ["[0.01, 0.03]", "[-inf, 1]"]}, index=["acc", "f1 <x>"])
    return Document(title="Sweep <demo>", blocks=[
        Heading("Sweep demo", 1),
        Text("Runs of `erc-sweeps` & friends"),
        Caveat("ignored 2 runs"),
        Table(frame, "metric", "The paper's table"),
        Figure(fig, "Fold-paired values"),
        Figures("One figure per metric", [fig]),
        Notes(["first", "second"]),
    ])


def test_markdown_renders_every_block_in_order(doc):
    text = to_markdown(doc.blocks)
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert text.split("\n\n") == [
        "# Sweep demo",
        "Runs of `erc-sweeps` & friends",
        "> warning: ignored 2 runs",
        "| metric | T | CI95% |\n|:---|---:|---:|\n| acc | 2.5 | [0.01, 0.03] |\n| f1 <x> | n/a | [-inf, 1] |",
        "Fold-paired values: `acc_paired.png`",
        "One figure per metric: `acc_paired.png`",
        "### Notes",
        "1. first\n2. second\n",
    ]


def test_markdown_table_of_an_empty_frame_is_its_header():
    assert markdown_table(pd.DataFrame(columns=["a"]), "arm") == "| arm | a |\n|:---|---:|"


def test_html_page_is_well_formed_escaped_and_self_contained(doc):
    page = to_html(doc)
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    assert parsed.text["title"] == ["Sweep <demo>"] and parsed.text["h1"] == ["Sweep demo"]
    # Code spans become <code>; everything else is escaped text.
    assert parsed.text["code"] == ["erc-sweeps"] and "&amp; friends" in page
    assert '<p class="warning">warning: ignored 2 runs</p>' in page
    # The table: a caption, a header row, the index in the first cell; numbers right-aligned, text not.
    assert parsed.text["caption"] == ["The paper's table"]
    assert parsed.text["th"] == ["metric", "T", "CI95%"]
    assert parsed.text["td"] == ["acc", "2.5", "[0.01, 0.03]", "f1 <x>", "n/a", "[-inf, 1]"]
    tds = [a.get("class") for tag, a in parsed.attrs if tag == "td"]
    assert tds == [None, "num", "num", None, "num", "num"]
    # Figures are embedded as data: URIs of the file's bytes: nothing is fetched from elsewhere.
    images = [a for tag, a in parsed.attrs if tag == "img"]
    assert len(images) == 2 and all(a["src"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
                                    for a in images)
    assert [a["data-file"] for a in images] == ["acc_paired.png", "acc_paired.png"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert parsed.text["li"] == ["first", "second"] and parsed.text["h3"] == ["Notes"]


def test_only_image_files_can_be_embedded(tmp_path):
    svg = tmp_path / "x.SVG"
    svg.write_text("<svg/>")
    assert data_uri(svg).startswith("data:image/svg+xml;base64,")
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(ValueError, match="only PNG, SVG and JPEG"):
        data_uri(pdf)


def test_an_unknown_block_is_refused():
    with pytest.raises(TypeError, match="not a report block"):
        to_markdown(["plain string"])
    with pytest.raises(TypeError, match="not a report block"):
        to_html(Document(title="t", blocks=[42]))
