"""Types and small helpers shared by the format loaders.

The dataclasses live here (not in ``__init__``) so each format module can import
them without a circular import through the package's dispatcher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pharmgpt.services.errors import IngestionError


@dataclass
class Section:
    text: str
    page: int | None
    heading: str | None
    kind: str = "text"
    code: str | None = None  # the section's LOINC code in an SPL label
    ocr: bool = False  # the text was recognised in a scan (Tesseract), not read from a text layer


@dataclass
class LoadedDocument:
    sections: list[Section]
    page_count: int | None
    warnings: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)  # drug names the file declares it is about


KIND_NAMES = {
    "pdf": "a PDF",
    "zip": "a ZIP archive (such as a Word .docx file)",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "tiff": "a TIFF image",
    "ole": "an old-format Office file (.doc/.xls) or a password-protected Office file",
}


def mislabelled(filename: str, expected: str, actual: str) -> IngestionError:
    return IngestionError(
        f"{filename} is named as {expected} but is actually {KIND_NAMES[actual]}; "
        "please give it the right file extension and upload it again",
        details={"expected": expected, "actual": actual},
    )


_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "\x00": ""})


def normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep single line breaks and paragraph breaks (one blank line)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_LIGATURES)
    text = re.sub(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u3000]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def inline(text: str) -> str:
    """All whitespace (including line breaks) collapsed to single spaces, for titles and cells."""
    return " ".join(text.split())


def markdown_table(rows: list[list[str]]) -> str:
    """Rows (first row = header) as a Markdown table; ragged rows are padded."""
    rows = [[inline(c).replace("|", "\\|") for c in r] for r in rows]
    if not rows or not any(any(r) for r in rows):
        return ""
    rows = rows[:1] + [r for r in rows[1:] if any(r)]
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(["---"] * width) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
