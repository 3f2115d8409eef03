"""How much one uploaded file may expand into, checked while it is read (issue 12).

A few hundred kilobytes can unpack into millions of pages, paragraphs, columns
or characters; each loader charges what it produces against these limits and
stops at the first one passed, with a reason a pharmacist can act on. Passing a
limit is a property of the file, so the job fails for good (no retry).
"""

from __future__ import annotations

from dataclasses import dataclass

from pharmgpt.services.errors import IngestionError


class LimitExceeded(IngestionError):
    """The file expands past a processing limit: permanent, never retried."""

    code = "file_too_large_to_process"


@dataclass(frozen=True)
class Limits:
    max_pages: int = 2000
    max_ocr_pages: int = 100  # scanned pages recognised per file (a few seconds each)
    max_chars: int = 5_000_000  # extracted text, about 2,500 dense pages
    max_chunks: int = 10_000
    max_paragraphs: int = 200_000  # DOCX paragraphs and table cells
    max_columns: int = 1_000  # CSV columns in one row
    max_cell_chars: int = 20_000  # characters in one CSV cell
    max_pdf_operators: int = 3_000_000  # content-stream operators over all pages
    max_xml_depth: int = 200
    max_unpacked_bytes: int = 200 * 2**20  # a DOCX's unzipped size

    @classmethod
    def from_settings(cls, settings) -> Limits:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{n: getattr(settings, n) for n in names if hasattr(settings, n)})


def too_big(filename: str, what: str, limit: int, unit: str) -> LimitExceeded:
    return LimitExceeded(
        f"{filename} was not processed: it expands to more than {limit:,} {unit}, which is past "
        "this server's limit for one file. Split it into smaller files, or save only the pages "
        "you need, and upload those.",
        details={"limit": what, "value": limit},
    )


class Budget:
    """Running totals for one file; raises LimitExceeded as soon as one is passed."""

    def __init__(self, filename: str, limits: Limits):
        self.filename = filename
        self.limits = limits
        self.chars = 0
        self.paragraphs = 0
        self.operators = 0

    def add_chars(self, n: int) -> None:
        self.chars += n
        if self.chars > self.limits.max_chars:
            raise too_big(
                self.filename, "characters of text", self.limits.max_chars, "characters of text"
            )

    def add_paragraphs(self, n: int = 1) -> None:
        self.paragraphs += n
        if self.paragraphs > self.limits.max_paragraphs:
            raise too_big(
                self.filename,
                "paragraphs",
                self.limits.max_paragraphs,
                "paragraphs and table cells",
            )

    def add_operators(self, n: int = 1) -> None:
        self.operators += n
        if self.operators > self.limits.max_pdf_operators:
            raise too_big(
                self.filename,
                "PDF drawing operations",
                self.limits.max_pdf_operators,
                "drawing operations",
            )
