"""PDF files via pypdf: one Section per page so answers can cite page numbers.

Pages without a text layer (scans) are OCR'd from their embedded images when the
``tesseract`` command exists; there is no rasteriser here, so vector-only pages
(and scans without tesseract) are skipped with a warning instead.
"""

from __future__ import annotations

import io
import logging
import re

from services.errors import IngestionError

from ._common import LoadedDocument, Section, normalise_whitespace, ocr_image, tesseract_available
from .limits import Budget, LimitExceeded, Limits

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


def _ocr_page(page) -> str:
    """Text recognised in a page's embedded images (a scanned page is usually one image)."""
    texts = []
    for image in page.images:
        suffix = "." + (image.name.rsplit(".", 1)[-1] if "." in image.name else "png")
        texts.append(ocr_image(image.data, suffix=suffix))
    return "\n\n".join(texts)


def _extract(page, budget: Budget) -> str:
    """A page's text, every content-stream operator charged to the budget as pypdf visits it,
    so a stream of millions of operators (or one stream shared by every page) stops at the cap."""
    def count(op, args, cm, tm):
        budget.add_operators()
    return page.extract_text(visitor_operand_before=count) or ""


def load_pdf(filename: str, data: bytes, *, max_pages: int = 2000,
             budget: Budget | None = None) -> LoadedDocument:
    budget = budget or Budget(filename, Limits(max_pages=max_pages))
    reader = _open(filename, data)
    try:
        page_count = len(reader.pages)
    except Exception as e:
        raise IngestionError(f"{filename} is not a readable PDF (the file is damaged)",
                             details=repr(e)) from e
    if page_count > max_pages:
        raise IngestionError(f"{filename} has {page_count:,} pages; the limit is {max_pages:,}")
    if page_count == 0:
        raise IngestionError(f"{filename} has no pages")

    ocr = tesseract_available()
    sections: list[Section] = []
    warnings: list[str] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = clean_page_text(_extract(page, budget))
        except LimitExceeded:
            raise
        except Exception as e:  # one bad page should not lose the rest of the document
            log.warning("pdf %s page %d: %r", filename, number, e)
            warnings.append(f"page {number} could not be read")
            continue
        if not text and ocr:
            try:
                text = clean_page_text(_ocr_page(page))
            except Exception as e:
                log.warning("pdf %s page %d OCR failed: %r", filename, number, e)
        if not text:
            warnings.append(f"no text on page {number}")
            continue
        budget.add_chars(len(text))
        sections.append(Section(text, number, None))

    if not sections and not ocr:
        raise IngestionError(
            f"{filename} contains no extractable text (it looks like a scanned document, "
            "and text recognition (OCR) is not available on this server)"
        )
    return LoadedDocument(sections=sections, page_count=page_count, warnings=warnings)
