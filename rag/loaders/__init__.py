"""Turn an uploaded file into text Sections the chunker can split and cite.

``load_document`` picks a loader by extension (or MIME type when there is no known
extension), checks the file's first bytes so a renamed file is refused with a clear
message rather than a parser traceback, and makes sure something readable came out.
Format modules are imported lazily so importing this package stays cheap.
"""

from __future__ import annotations

from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, mislabelled, sniff
from .limits import Budget, LimitExceeded, Limits, too_big
from .ocr import Progress

__all__ = [
    "LimitExceeded",
    "Limits",
    "LoadedDocument",
    "Section",
    "SUPPORTED_EXTENSIONS",
    "load_document",
]

_BY_EXTENSION = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".xml": "spl",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
}
SUPPORTED_EXTENSIONS = tuple(_BY_EXTENSION)

_BY_MIME = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/xml": "spl",
    "text/xml": "spl",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/tiff": "tiff",
}

_DESCRIPTION = {
    "pdf": "a PDF",
    "docx": "a Word document (.docx)",
    "text": "a text file",
    "markdown": "a Markdown file",
    "csv": "a CSV file",
    "spl": "an XML label",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "tiff": "a TIFF image",
}


def _base_name(filename: str) -> str:
    return filename.replace("\\", "/").rsplit("/", 1)[-1] or "the file"


def _format(name: str, file_type: str | None) -> str:
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    if ext in (".doc", ".rtf", ".odt"):
        raise IngestionError(
            f"{name} is in a format that is not supported; "
            "please save it as a Word .docx or a PDF and upload it again"
        )
    mime = (file_type or "").split(";", 1)[0].strip().lower()
    if mime in _BY_MIME:
        return _BY_MIME[mime]
    raise IngestionError(
        f"{name}: this type of file is not supported "
        "(supported: PDF, Word .docx, text, Markdown, CSV, FDA label XML, PNG, JPEG and TIFF images)",
        details={"extension": ext, "file_type": file_type},
    )


def _check_bytes(name: str, fmt: str, data: bytes) -> str | None:
    """Refuse files whose content is a different format from their name; return the sniffed kind."""
    kind = sniff(data)
    if fmt == "docx" and kind == "ole":
        raise IngestionError(
            f"{name} is password-protected or in the old Word .doc format; "
            "please save it as a .docx without a password and upload it again"
        )
    images = {"png", "jpeg", "tiff"}
    if kind is None and fmt in images:
        raise IngestionError(
            f"{name} is not a valid image (the file is damaged or is not a PNG, JPEG or TIFF image)"
        )
    allowed = {"pdf": {"pdf", None}, "docx": {"zip", None}, **{f: images for f in images}}.get(
        fmt, {None}
    )
    if kind not in allowed:
        raise mislabelled(name, _DESCRIPTION[fmt], kind)
    return kind


def load_document(
    filename: str,
    data: bytes,
    file_type: str | None = None,
    *,
    max_pages: int | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    only_page: int | None = None,
) -> LoadedDocument:
    """Load one uploaded file. Raises IngestionError with a message fit to show the user,
    LimitExceeded (an IngestionError) when the file expands past `limits`.

    `progress(done, total)` is told as scanned pages are OCR'd; `only_page` reads just that
    page of a PDF (to show one cited page without recognising a whole scan again)."""
    limits = limits or Limits()
    if max_pages is not None:
        limits = Limits(**{**limits.__dict__, "max_pages": max_pages})
    name = _base_name(filename)
    fmt = _format(name, file_type)
    if not data or not data.strip():
        raise IngestionError(f"{name} is empty")
    _check_bytes(name, fmt, data)
    budget = Budget(name, limits)

    if fmt == "pdf":
        from .pdf import load_pdf

        doc = load_pdf(
            name,
            data,
            max_pages=limits.max_pages,
            budget=budget,
            progress=progress,
            only_page=only_page,
        )
    elif fmt == "docx":
        from .docx import load_docx

        doc = load_docx(name, data, budget=budget)
    elif fmt == "text":
        from .text import load_text

        doc = load_text(name, data, budget=budget)
    elif fmt == "markdown":
        from .text import load_markdown

        doc = load_markdown(name, data, budget=budget)
    elif fmt == "csv":
        from .csv_loader import load_csv

        doc = load_csv(name, data, budget=budget)
    elif fmt == "spl":
        from .spl import load_spl

        doc = load_spl(name, data, max_depth=limits.max_xml_depth)
    else:
        from .image import load_image

        doc = load_image(name, data, budget=budget, progress=progress)

    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise IngestionError(f"{name} contains no extractable text", details=doc.warnings or None)
    total = sum(len(s.text) for s in doc.sections)
    if total > limits.max_chars:
        raise too_big(name, "characters of text", limits.max_chars, "characters of text")
    return doc
