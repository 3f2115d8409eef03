"""Plain-text and Markdown files.

Pharmacy notes arrive from Windows tools (cp1252), Excel "Unicode text" exports
(UTF-16) and modern editors (UTF-8, sometimes with a BOM), so the encoding is
detected rather than assumed.
"""

from __future__ import annotations

import codecs
import re

from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, markdown_table, normalise_whitespace
from .limits import Budget

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _guess(data: bytes) -> str | None:
    """charset_normalizer's guess, preferring cp1252 when it ties with the best guess.

    On short Western text charset_normalizer often ranks an exotic code page first
    (cp1006 for "café 5 µg"); every candidate that decodes equally well is a tie, and
    cp1252 is by far the likeliest source of a non-UTF-8 file here.
    """
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: fall back to cp1252/latin-1
        return None
    results = from_bytes(data)
    best = results.best()
    if best is None:
        return None
    for r in results:
        tied = (r.chaos, r.coherence) == (best.chaos, best.coherence)
        if tied and "cp1252" in r.could_be_from_charset:
            return "cp1252"
    return best.encoding


def decode(data: bytes) -> str:
    """Bytes to text: BOM, then strict UTF-8, then a detected code page, then cp1252/latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    guess = _guess(data)
    for encoding in filter(None, (guess, "cp1252")):
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1")


# control characters that never occur in text (tab, line breaks and form feed do)
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_BINARY_SHARE = 0.01


def _looks_binary(text: str) -> bool:
    """Control characters in more than 1 % of the whole decoded text (not only the first
    8 KB the upload check reads): a binary file renamed .txt, or one with text in front."""
    bad = len(_BINARY.findall(text))
    return bad > max(8, len(text) * _BINARY_SHARE)


def decode_text_file(filename: str, data: bytes, budget: Budget | None = None) -> str:
    """Decoded text with normalised line endings; IngestionError if there is nothing in it
    or it is not text; LimitExceeded past the budget's characters."""
    if not data.strip():
        raise IngestionError(f"{filename} is empty")
    text = decode(data)
    if budget is not None:
        budget.add_chars(len(text))
    if _looks_binary(text):
        raise IngestionError(
            f"{filename} looks like a binary file, not text; upload the document "
            "itself (PDF, Word, text) rather than this file"
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if not text.strip():
        raise IngestionError(f"{filename} is empty")
    return text


def load_text(filename: str, data: bytes, budget: Budget | None = None) -> LoadedDocument:
    text = normalise_whitespace(decode_text_file(filename, data, budget))
    return LoadedDocument(sections=[Section(text, None, None)], page_count=None, warnings=[])


_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _md_table(lines: list[str]) -> str:
    """Re-render a Markdown table canonically (our header/separator layout)."""
    rows = []
    for line in lines:
        if _TABLE_SEP.match(line):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return markdown_table(rows)


def load_markdown(filename: str, data: bytes, budget: Budget | None = None) -> LoadedDocument:
    """One Section per ATX (``#``) heading; pipe tables become their own table Sections."""
    lines = decode_text_file(filename, data, budget).split("\n")
    sections: list[Section] = []
    heading: str | None = None
    buf: list[str] = []
    table: list[str] = []
    in_fence = False

    def flush_text() -> None:
        text = normalise_whitespace("\n".join(buf))
        if text:
            sections.append(Section(text, None, heading))
        buf.clear()

    def flush_table() -> None:
        if len(table) >= 2 and _TABLE_SEP.match(table[1]):
            flush_text()
            sections.append(Section(_md_table(table), None, heading, kind="table"))
        else:
            buf.extend(table)
        table.clear()

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and _TABLE_ROW.match(line):
            table.append(line)
            continue
        if table:
            flush_table()
        m = None if in_fence else _HEADING.match(line)
        if m:
            flush_text()
            heading = m.group(2).strip() or None
        else:
            buf.append(line)
    if table:
        flush_table()
    flush_text()
    return LoadedDocument(sections=sections, page_count=None, warnings=[])
