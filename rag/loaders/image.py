"""PNG, JPEG and TIFF images (photos of labels, scanned leaflets), read by OCR (rag/loaders/ocr.py).

Each frame is a page (a multi-page TIFF from a scanner is a whole document), so
answers cite "page 2" of a TIFF as they do of a PDF. Without Tesseract the upload
fails with what to install, never an empty document.
"""

from __future__ import annotations

from pharmgpt.services.errors import IngestionError

from . import ocr
from ._common import LoadedDocument, Section, normalise_whitespace
from .limits import Budget, Limits, too_big


def load_image(
    filename: str,
    data: bytes,
    *,
    budget: Budget | None = None,
    progress: ocr.Progress | None = None,
) -> LoadedDocument:
    budget = budget or Budget(filename, Limits())
    if not ocr.available():
        raise IngestionError(f"{filename} can't be read: {ocr.UNAVAILABLE} {ocr.ENABLE_HINT}")
    try:
        frames = list(ocr.image_frames(data))
    except ValueError as e:
        raise IngestionError(
            f"{filename} is not a readable image (the file is damaged)", details=str(e)
        ) from e
    if len(frames) > budget.limits.max_ocr_pages:
        raise too_big(
            filename, "scanned pages", budget.limits.max_ocr_pages, "scanned pages (images) to read"
        )
    multi = len(frames) > 1
    if progress:
        progress(0, len(frames))
    sections: list[Section] = []
    warnings: list[str] = []
    for number, frame in enumerate(frames, start=1):
        try:
            text = normalise_whitespace(ocr.recognise(frame))
        except RuntimeError as e:
            raise IngestionError(
                f"{filename}: text recognition (OCR) failed", details=str(e)
            ) from e
        if progress:
            progress(number, len(frames))
        if not text:
            warnings.append(
                f"no text recognised on page {number}" if multi else "no text recognised"
            )
            continue
        budget.add_chars(len(text))
        sections.append(Section(text, number if multi else None, None, ocr=True))
    return LoadedDocument(
        sections=sections, page_count=len(frames) if multi else None, warnings=warnings
    )
