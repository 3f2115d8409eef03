"""PDF files via pypdf: one Section per page so answers can cite page numbers.

Pages without a text layer (scans) are rendered with pypdfium2 and read by
Tesseract (rag/loaders/ocr.py), their sections marked ``ocr``; the text layer is
read first for every page, so the number of pages to recognise is known and
progress can say "page 3 of 10". Without Tesseract those pages are skipped with
a warning that says how to enable it, and a PDF with no text at all is refused.
"""

from __future__ import annotations

import io
import logging
import re

from pharmgpt.services.errors import IngestionError

from . import ocr
from ._common import LoadedDocument, Section, normalise_whitespace
from .limits import Budget, LimitExceeded, Limits, too_big

log = logging.getLogger(__name__)

# "hepato-\ntoxicity" -> "hepatotoxicity": a hyphen at a line end followed by a lowercase letter.
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])[-\u00ad]\n(?=[a-z])")


def clean_page_text(text: str) -> str:
    text = normalise_whitespace(text)
    text = _HYPHEN_BREAK.sub("", text)
    return text.replace("\u00ad", "")


def _open(filename: str, data: bytes):
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    damaged = f"{filename} is not a readable PDF (the file is damaged)"
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as e:  # pypdf raises many types on malformed input
        raise IngestionError(damaged, details=repr(e)) from e
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")
        except (DependencyError, NotImplementedError) as e:
            raise IngestionError(
                f"{filename} uses an encryption method this server cannot open", details=repr(e)
            ) from e
        except Exception as e:  # any other failure to decrypt means a damaged file
            raise IngestionError(damaged, details=repr(e)) from e
        if not ok:
            raise IngestionError(
                f"{filename} is encrypted and could not be opened without a password"
            )
    return reader


def _extract(page, budget: Budget) -> str:
    """A page's text, every content-stream operator charged to the budget as pypdf visits it,
    so a stream of millions of operators (or one stream shared by every page) stops at the cap."""

    def count(op, args, cm, tm):
        budget.add_operators()

    return page.extract_text(visitor_operand_before=count) or ""


def _recognise(
    filename: str, data: bytes, numbers: list[int], budget: Budget, progress: ocr.Progress | None
) -> tuple[dict[int, str], list[str]]:
    """OCR text of the given scanned pages, and warnings for those that could not be read."""
    if len(numbers) > budget.limits.max_ocr_pages:
        raise too_big(
            filename, "scanned pages", budget.limits.max_ocr_pages, "scanned pages to read"
        )
    texts: dict[int, str] = {}
    warnings: list[str] = []
    if progress:
        progress(0, len(numbers))
    for done, (number, image) in enumerate(ocr.render_pdf_pages(data, numbers), start=1):
        try:
            if image is None:
                raise RuntimeError("the page could not be rendered")
            texts[number] = clean_page_text(ocr.recognise(image))
        except RuntimeError as e:
            log.warning("pdf %s page %d OCR failed: %s", filename, number, e)
            warnings.append(f"page {number} could not be read by OCR")
        if progress:
            progress(done, len(numbers))
    return texts, warnings


def load_pdf(
    filename: str,
    data: bytes,
    *,
    max_pages: int = 2000,
    budget: Budget | None = None,
    progress: ocr.Progress | None = None,
    only_page: int | None = None,
) -> LoadedDocument:
    budget = budget or Budget(filename, Limits(max_pages=max_pages))
    reader = _open(filename, data)
    try:
        page_count = len(reader.pages)
    except Exception as e:
        raise IngestionError(
            f"{filename} is not a readable PDF (the file is damaged)", details=repr(e)
        ) from e
    if page_count > max_pages:
        raise IngestionError(f"{filename} has {page_count:,} pages; the limit is {max_pages:,}")
    if page_count == 0:
        raise IngestionError(f"{filename} has no pages")

    texts: dict[int, str] = {}
    warnings: list[str] = []
    for number, page in enumerate(reader.pages, start=1):
        if only_page is not None and number != only_page:
            continue
        try:
            texts[number] = clean_page_text(_extract(page, budget))
        except LimitExceeded:
            raise
        except Exception as e:  # one bad page should not lose the rest of the document
            log.warning("pdf %s page %d: %r", filename, number, e)
            warnings.append(f"page {number} could not be read")
    scanned = [n for n, t in texts.items() if not t]
    recognised: dict[int, str] = {}
    can_ocr = ocr.available()
    if scanned and can_ocr:
        recognised, ocr_warnings = _recognise(filename, data, scanned, budget, progress)
        warnings += ocr_warnings
    sections: list[Section] = []
    for number in sorted(texts):
        text, was_ocr = texts[number] or recognised.get(number, ""), not texts[number]
        if not text:
            if not (was_ocr and can_ocr and f"page {number} could not be read by OCR" in warnings):
                warnings.append(f"no text on page {number}")
            continue
        budget.add_chars(len(text))
        sections.append(Section(text, number, None, ocr=was_ocr))
    if scanned and not can_ocr:
        if not sections:
            raise IngestionError(
                f"{filename} contains no extractable text: it looks like a scanned document, "
                f"and {ocr.UNAVAILABLE} {ocr.ENABLE_HINT}"
            )
        warnings.append(
            f"{len(scanned)} page(s) without a text layer were skipped: {ocr.UNAVAILABLE}"
        )
    return LoadedDocument(sections=sections, page_count=page_count, warnings=warnings)
