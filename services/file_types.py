"""The file types PharmGPT reads: one table for upload validation, the loaders and the uploader.

Each row says which extensions and MIME types name the type, how its first bytes are
checked (so a renamed file is refused before any parser sees it) and which loader in
``rag/loaders`` reads it (``"module:function"``). A shared fact module: it imports nothing
of the product, so ``rag`` may use it as well as ``services`` and ``app``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Magic numbers of the binary formats we know; a kind is what the bytes really are.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),  # legacy .doc/.xls, or an encrypted .docx
)
PDF_HEADER_WINDOW = 1024  # PDF readers accept junk before the header; so do we
TEXT_WINDOW = 8192  # a NUL byte in this much of a text file means it is binary
MARKUP_WINDOW = 1024  # an XML file has a "<" this near its start
# UTF-32 and UTF-16 text (Excel "Unicode text" exports) has NUL bytes; its BOM says so
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


@dataclass(frozen=True)
class FileType:
    name: str  # the format's key, e.g. "pdf"
    label: str  # as messages name it: "a PDF"
    extensions: tuple[str, ...]  # lower case, with the dot
    mime_types: tuple[str, ...]  # the first is what an upload records
    loader: str  # "module:function" in pharmgpt.rag.loaders
    kinds: tuple[str, ...] = ()  # the signature kinds its bytes must start with; () = text
    markup: bool = False  # text that must contain a "<" near the start (XML)

    @property
    def mime(self) -> str:
        return self.mime_types[0]

    @property
    def text(self) -> bool:
        return not self.kinds


_IMAGE = "image:load_image"
TYPES: tuple[FileType, ...] = (
    FileType("pdf", "a PDF", (".pdf",), ("application/pdf",), "pdf:load_pdf", ("pdf",)),
    FileType(
        "docx",
        "a Word document (.docx)",
        (".docx",),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
        "docx:load_docx",
        ("zip",),
    ),
    FileType("text", "a text file", (".txt", ".text"), ("text/plain",), "text:load_text"),
    FileType(
        "markdown",
        "a Markdown file",
        (".md", ".markdown"),
        ("text/markdown", "text/x-markdown"),
        "text:load_markdown",
    ),
    FileType(
        "csv", "a CSV file", (".csv",), ("text/csv", "application/csv"), "csv_loader:load_csv"
    ),
    FileType(
        "spl",
        "an XML label",
        (".xml",),
        ("application/xml", "text/xml"),
        "spl:load_spl",
        markup=True,
    ),
    FileType("png", "a PNG image", (".png",), ("image/png",), _IMAGE, ("png",)),
    FileType("jpeg", "a JPEG image", (".jpg", ".jpeg"), ("image/jpeg",), _IMAGE, ("jpeg",)),
    FileType("tiff", "a TIFF image", (".tif", ".tiff"), ("image/tiff",), _IMAGE, ("tiff",)),
)
# named in messages: "supported: PDF, Word .docx, ..."
SUPPORTED_TEXT = "PDF, Word .docx, text, Markdown, CSV, FDA label XML, PNG, JPEG and TIFF images"

EXTENSIONS: tuple[str, ...] = tuple(e for t in TYPES for e in t.extensions)
_BY_EXTENSION = {e: t for t in TYPES for e in t.extensions}
_BY_MIME = {m: t for t in TYPES for m in t.mime_types}


def extension(filename: str) -> str:
    """The name's last suffix, lower case with its dot ("" without one)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base.strip(".") else ""


def by_extension(filename_or_ext: str) -> FileType | None:
    ext = filename_or_ext.lower() if filename_or_ext.startswith(".") else extension(filename_or_ext)
    return _BY_EXTENSION.get(ext)


def by_mime(file_type: str | None) -> FileType | None:
    """The type a MIME type names (parameters such as "; charset=utf-8" ignored)."""
    return _BY_MIME.get((file_type or "").split(";", 1)[0].strip().lower())


def sniff(data: bytes) -> str | None:
    """The real binary format of ``data`` from its first bytes, or None if it is none of ours."""
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    if b"%PDF-" in data[:PDF_HEADER_WINDOW]:
        return "pdf"
    return None


def looks_binary(data: bytes) -> bool:
    """NUL bytes near the start of what should be text, unless it is UTF-16/32 text (a BOM,
    or most characters' high byte NUL: Latin script without a BOM, which the loader reads)."""
    window = data[:TEXT_WINDOW]
    if b"\x00" not in window or window.startswith(_WIDE_BOMS):
        return False
    return not any(_wide_text(window, order) for order in ("utf-16-le", "utf-16-be"))


def _wide_text(window: bytes, encoding: str) -> bool:
    units = window[: len(window) // 2 * 2]
    high = units[1::2] if encoding.endswith("le") else units[0::2]
    if not high or high.count(0) * 2 < len(high):
        return False
    text = units.decode(encoding, errors="replace")
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


def content_matches(ft: FileType, data: bytes) -> bool:
    """Whether ``data``'s first bytes are what a file of type ``ft`` starts with."""
    kind = sniff(data)
    if ft.kinds:
        return kind in ft.kinds
    if kind is not None or looks_binary(data):
        return False
    return not ft.markup or b"<" in data[:MARKUP_WINDOW]
