"""Turn an uploaded file into text Sections the chunker can split and cite.

``load_document`` picks a loader from the file-type table (services/file_types.py) by
extension (or MIME type when there is no known extension), checks the file's first bytes
so a renamed file is refused with a clear message rather than a parser traceback, and
makes sure something readable came out.
Format modules are imported lazily so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
import inspect

from pharmgpt.services import file_types
from pharmgpt.services.errors import IngestionError

from ._common import LoadedDocument, Section, mislabelled
from .limits import Budget, LimitExceeded, Limits, too_big
from .ocr import Progress

__all__ = [
    "LimitExceeded",
    "Limits",
    "LoadedDocument",
    "Section",
    "SUPPORTED_EXTENSIONS",
    "check_first_bytes",
    "file_type_of",
    "load_document",
]

SUPPORTED_EXTENSIONS = file_types.EXTENSIONS


def _base_name(filename: str) -> str:
    return filename.replace("\\", "/").rsplit("/", 1)[-1] or "the file"


def file_type_of(name: str, file_type: str | None) -> file_types.FileType:
    """The table's type of a file by extension, else by MIME type (a file stored without a
    known extension); IngestionError naming what is supported otherwise."""
    ext = file_types.extension(name)
    ft = file_types.by_extension(ext) if ext else None
    if ft is not None:
        return ft
    if ext in (".doc", ".rtf", ".odt"):
        raise IngestionError(
            f"{name} is in a format that is not supported; "
            "please save it as a Word .docx or a PDF and upload it again"
        )
    ft = file_types.by_mime(file_type)
    if ft is not None:
        return ft
    raise IngestionError(
        f"{name}: this type of file is not supported (supported: {file_types.SUPPORTED_TEXT})",
        details={"extension": ext, "file_type": file_type},
    )


def check_first_bytes(name: str, ft: file_types.FileType, data: bytes) -> None:
    """Refuse files whose first bytes are not what their type starts with (the same rule as
    upload validation, services/file_types.py), with a message that says what they are."""
    if file_types.content_matches(ft, data):
        return
    kind = file_types.sniff(data)
    if ft.name == "docx" and kind == "ole":
        raise IngestionError(
            f"{name} is password-protected or in the old Word .doc format; "
            "please save it as a .docx without a password and upload it again"
        )
    if kind is not None:
        raise mislabelled(name, ft.label, kind)
    if ft.text and file_types.looks_binary(data):
        raise IngestionError(
            f"{name} looks like a binary file, not text; upload the document "
            "itself (PDF, Word, text) rather than this file"
        )
    if ft.kinds and set(ft.kinds) <= _IMAGE_KINDS:
        raise IngestionError(
            f"{name} is not a valid image (the file is damaged or is not a PNG, JPEG or TIFF image)"
        )
    raise IngestionError(f"{name} is not {ft.label} (the file is damaged or wrongly named)")


_IMAGE_KINDS = {"png", "jpeg", "tiff"}


def _load(ft: file_types.FileType, name: str, data: bytes, **options) -> LoadedDocument:
    """Call the table's loader with the options it takes (each format needs different ones)."""
    module, function = ft.loader.split(":")
    fn = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    accepted = inspect.signature(fn).parameters
    return fn(name, data, **{k: v for k, v in options.items() if k in accepted})


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
    ft = file_type_of(name, file_type)
    if not data or not data.strip():
        raise IngestionError(f"{name} is empty")
    check_first_bytes(name, ft, data)
    doc = _load(
        ft,
        name,
        data,
        max_pages=limits.max_pages,
        max_depth=limits.max_xml_depth,
        budget=Budget(name, limits),
        progress=progress,
        only_page=only_page,
    )

    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise IngestionError(f"{name} contains no extractable text", details=doc.warnings or None)
    total = sum(len(s.text) for s in doc.sections)
    if total > limits.max_chars:
        raise too_big(name, "characters of text", limits.max_chars, "characters of text")
    return doc
