"""Text as the target stores it, and legacy files read whatever their encoding."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from .problems import Problems


def clean_text(value: str) -> tuple[str, bool]:
    """Text Postgres will store: no NUL, no lone surrogates. Returns (text, changed)."""
    changed = False
    if "\x00" in value:
        value, changed = value.replace("\x00", "\ufffd"), True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        changed = True
    return value, changed


def normalize_username(name: str) -> str:
    """What services.users.normalize_username does at sign-in."""
    return unicodedata.normalize("NFKC", name or "").strip()


def read_text(path: Path, problems: Problems, rel: str) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as e:
        problems.add(rel, f"unreadable: {e.strerror or e}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.add(
            rel,
            f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); decoded as Windows-1252",
            "warning",
        )
        return data.decode("cp1252", errors="replace")
