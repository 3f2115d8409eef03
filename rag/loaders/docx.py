"""Word (.docx) files via python-docx, in reading order.

Headings start a new Section so chunks never mix two topics; tables become their
own Markdown Sections because the chunker keeps tables whole.
"""

from __future__ import annotations

import io
import re

from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, markdown_table, normalise_whitespace
from .limits import Budget, Limits, too_big

_HEADING_STYLE = re.compile(r"^(Heading \d+|Title)$", re.IGNORECASE)


def _style_name(paragraph) -> str:
    try:
        return paragraph.style.name if paragraph.style is not None else ""
    except (KeyError, AttributeError, ValueError):  # a style id missing from styles.xml
        return ""


def _table_rows(table) -> list[list[str]]:
    """Cell texts; a horizontally merged cell is repeated by python-docx, so blank repeats."""
    rows = []
    for row in table.rows:
        cells, previous = [], None
        for cell in row.cells:
            cells.append("" if cell._tc is previous else cell.text)
            previous = cell._tc
        rows.append(cells)
    return rows


_PARAGRAPH_TAGS = (b"<w:p>", b"<w:p ", b"<w:p/>", b"<w:tc>", b"<w:tc ")


def _precheck(filename: str, data: bytes, budget: Budget) -> None:
    """Before python-docx builds a tree of it: the unzipped size, and the paragraphs and table
    cells counted by streaming word/document.xml (a 290 KB file can hold 2 million)."""
    import zipfile

    limits = budget.limits
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if sum(i.file_size for i in z.infolist()) > limits.max_unpacked_bytes:
                raise too_big(
                    filename,
                    "unzipped size",
                    limits.max_unpacked_bytes // 2**20,
                    "MB when unzipped",
                )
            if "word/document.xml" not in z.namelist():
                return  # python-docx says what is wrong
            tail = b""
            with z.open("word/document.xml") as f:
                while block := f.read(1 << 20):
                    window = tail + block
                    budget.add_paragraphs(
                        sum(window.count(t) for t in _PARAGRAPH_TAGS)
                        - sum(tail.count(t) for t in _PARAGRAPH_TAGS)
                    )
                    tail = window[-8:]
    except zipfile.BadZipFile:
        return  # reported by the parse below
    budget.paragraphs = 0  # counted again as they are read


def load_docx(filename: str, data: bytes, budget: Budget | None = None) -> LoadedDocument:
    import docx
    from docx.table import Table

    budget = budget or Budget(filename, Limits())
    _precheck(filename, data, budget)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except Exception as e:  # BadZipFile, KeyError (missing part), PackageNotFoundError, ValueError…
        raise IngestionError(
            f"{filename} is not a readable Word document (the file is damaged or is not a .docx)",
            details=repr(e),
        ) from e

    sections: list[Section] = []
    heading: str | None = None
    buf: list[str] = []

    def flush() -> None:
        text = normalise_whitespace("\n\n".join(buf))
        if text:
            sections.append(Section(text, None, heading))
        buf.clear()

    for block in blocks:
        budget.add_paragraphs()
        if isinstance(block, Table):
            rows = _table_rows(block)
            budget.add_paragraphs(sum(len(r) for r in rows))
            table = markdown_table(rows)
            budget.add_chars(len(table))
            if table:
                flush()
                sections.append(Section(table, None, heading, kind="table"))
            continue
        text = block.text.strip()
        budget.add_chars(len(text))
        style = _style_name(block)
        if _HEADING_STYLE.match(style):
            if text:
                flush()
                heading = " ".join(text.split())
        elif text:
            buf.append(f"- {text}" if style.startswith("List") else text)
    flush()
    return LoadedDocument(sections=sections, page_count=None, warnings=[])
