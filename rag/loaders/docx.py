"""Word (.docx) files via python-docx, in reading order.

Headings start a new Section so chunks never mix two topics; tables become their
own Markdown Sections because the chunker keeps tables whole.
"""

from __future__ import annotations

import io
import re

from services.errors import IngestionError

from ._common import LoadedDocument, Section, markdown_table, normalise_whitespace

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


def load_docx(filename: str, data: bytes) -> LoadedDocument:
    import docx
    from docx.table import Table

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
        if isinstance(block, Table):
            table = markdown_table(_table_rows(block))
            if table:
                flush()
                sections.append(Section(table, None, heading, kind="table"))
            continue
        text = block.text.strip()
        style = _style_name(block)
        if _HEADING_STYLE.match(style):
            if text:
                flush()
                heading = " ".join(text.split())
        elif text:
            buf.append(f"- {text}" if style.startswith("List") else text)
    flush()
    return LoadedDocument(sections=sections, page_count=None, warnings=[])
