"""Section- and paragraph-aware chunking with overlap, never cutting a word.

Defaults follow the old app (about 1,000 characters, 200 overlap). A chunk
never spans two headings, so its heading is unambiguous; it may span pages,
and then carries the page range. Tables stay whole when they fit in 1.5
chunks; bigger ones are split by rows with the header row repeated, and a row
longer than a chunk is split at its cell boundaries (issue 12: one row of a
million columns used to become one 14 MB chunk). No unit is ever longer than
the chunk size, except a whole small table (at most 1.5 times it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .loaders import LoadedDocument, Section


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    page_start: int | None
    page_end: int | None
    heading: str | None
    position: int  # character offset of the chunk's first unit within the document's text
    kind: str = "text"
    section_code: str | None = None  # LOINC code of an SPL section
    ocr: bool = False  # some of its text was recognised in a scan (shown as "OCR" in sources)

    @property
    def pages(self) -> str:
        if self.page_start is None:
            return ""
        return (
            str(self.page_start)
            if self.page_start == self.page_end
            else f"{self.page_start}-{self.page_end}"
        )


@dataclass
class _Unit:
    text: str
    page: int | None
    heading: str | None
    kind: str
    position: int
    code: str | None = None
    ocr: bool = False


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


def _split_long(text: str, size: int) -> list[str]:
    """Pieces of at most `size` characters, cut at sentence, else word, boundaries."""
    if len(text) <= size:
        return [text]
    pieces: list[str] = []
    buf = ""
    for sentence in _SENTENCE.split(text):
        for word in sentence.split(" ") if len(sentence) > size else [sentence]:
            candidate = f"{buf} {word}".strip() if buf else word
            if len(candidate) <= size:
                buf = candidate
                continue
            if buf:
                pieces.append(buf)
            while len(word) > size:  # a single "word" longer than a chunk (e.g. a URL)
                pieces.append(word[:size])
                word = word[size:]
            buf = word
    if buf:
        pieces.append(buf)
    return pieces


def _split_row(row: str, size: int) -> list[str]:
    """A Markdown table row longer than `size`, cut between cells (inside a cell only when
    one cell alone is longer): each piece is a valid row of consecutive cells."""
    cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
    pieces: list[str] = []
    buf: list[str] = []
    for cell in cells:
        for part in _split_long(cell, max(1, size - 4)) if len(cell) > size - 4 else [cell]:
            if buf and len("| " + " | ".join([*buf, part]) + " |") > size:
                pieces.append("| " + " | ".join(buf) + " |")
                buf = []
            buf.append(part)
    if buf:
        pieces.append("| " + " | ".join(buf) + " |")
    return pieces


def _table_units(section: Section, size: int, position: int) -> list[_Unit]:
    def unit(text: str) -> _Unit:
        return _Unit(
            text, section.page, section.heading, "table", position, section.code, section.ocr
        )

    text = section.text.strip()
    if len(text) <= size * 1.5:
        return [unit(text)]
    rows = text.splitlines()
    header = (
        rows[:2]
        if len(rows) > 1 and set(rows[1].replace("|", "").strip()) <= set("-: ")
        else rows[:1]
    )
    if (
        len("\n".join(header)) > size // 2
    ):  # a header too wide to repeat: its own pieces, then rows alone
        rows = [piece for row in header[:1] for piece in _split_row(row, size)] + rows[
            len(header) :
        ]
        header = []
    units, buf = [], list(header)
    for row in rows[len(header) :]:
        for piece in (
            _split_row(row, size - len("\n".join(header)) - 1) if len(row) > size // 2 else [row]
        ):
            if len("\n".join(buf + [piece])) > size and len(buf) > len(header):
                units.append(unit("\n".join(buf)))
                buf = list(header)
            buf.append(piece)
    if len(buf) > len(header):
        units.append(unit("\n".join(buf)))
    return units


def _units(doc: LoadedDocument, size: int) -> list[_Unit]:
    out: list[_Unit] = []
    position = 0
    for s in doc.sections:
        if s.kind == "table":
            out.extend(_table_units(s, size, position))
        else:
            for para in re.split(r"\n\s*\n", s.text):
                para = " ".join(para.split())
                if para:
                    for piece in _split_long(para, size):
                        out.append(_Unit(piece, s.page, s.heading, "text", position, s.code, s.ocr))
                position += len(para) + 2
        position += len(s.text)
    return out


def _tail(text: str, overlap: int) -> str:
    if overlap <= 0 or len(text) <= overlap:
        return "" if overlap <= 0 else text
    cut = text[-overlap:]
    space = cut.find(" ")
    return cut[space + 1 :] if space != -1 else ""


def chunk_document(doc: LoadedDocument, size: int = 1000, overlap: int = 200) -> list[Chunk]:
    if overlap >= size:
        raise ValueError("overlap must be smaller than the chunk size")
    chunks: list[Chunk] = []
    cur: list[_Unit] = []
    carry = ""  # overlap text from the previous chunk of the same heading
    carry_page: int | None = None

    def flush() -> None:
        nonlocal cur, carry, carry_page
        if not cur:
            return
        body = "\n\n".join(u.text for u in cur)
        text = f"{carry} {body}".strip() if carry and cur[0].kind == "text" else body
        pages = [u.page for u in cur if u.page is not None]
        if carry and carry_page is not None and cur[0].kind == "text":
            pages.append(carry_page)
        kind = "table" if all(u.kind == "table" for u in cur) else "text"
        chunks.append(
            Chunk(
                len(chunks),
                text,
                min(pages) if pages else None,
                max(pages) if pages else None,
                cur[0].heading,
                cur[0].position,
                kind,
                cur[0].code,
                any(u.ocr for u in cur),
            )
        )
        carry = _tail(body, overlap) if kind == "text" else ""
        carry_page = cur[-1].page
        cur = []

    for u in _units(doc, size):
        if cur and u.heading != cur[0].heading:
            flush()
            carry = ""
        if u.kind == "table" or (cur and cur[-1].kind == "table"):
            flush()
            carry = ""
        length = len(carry) + sum(len(x.text) + 2 for x in cur) + len(u.text)
        if cur and length > size:
            flush()
        cur.append(u)
    flush()
    return chunks
