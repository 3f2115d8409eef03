"""PNG/JPEG images (photos of labels, scanned leaflets) via the tesseract CLI.

Tesseract is an optional system package, so its absence is reported clearly
rather than silently producing an empty document.
"""

from __future__ import annotations

from services.errors import IngestionError

from ._common import LoadedDocument, Section, normalise_whitespace, ocr_image, tesseract_available

OCR_TIMEOUT_S = 120


def load_image(filename: str, data: bytes, kind: str) -> LoadedDocument:
    """``kind`` is the sniffed format ("png" or "jpeg"); the dispatcher checked the bytes."""
    if not tesseract_available():
        raise IngestionError(f"{filename}: text recognition (OCR) is not available on this server")
    try:
        text = ocr_image(data, suffix=".png" if kind == "png" else ".jpg", timeout=OCR_TIMEOUT_S)
    except RuntimeError as e:
        raise IngestionError(f"{filename}: text recognition (OCR) failed", details=str(e)) from e
    text = normalise_whitespace(text)
    sections = [Section(text, None, None)] if text else []
    return LoadedDocument(sections=sections, page_count=None, warnings=[])
