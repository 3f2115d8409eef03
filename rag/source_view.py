"""What a citation opens to: the cited page or section of the document, with the quoted text marked.

A pharmacist checks an answer against its source, so every source must open:
a PDF/DOCX source to its page, an SPL (XML) source, which has no pages, to its
section. The quoted sentences are located in that text again (whitespace,
bullets and table bars may differ between the stored quote and the document),
so the view can highlight exactly what the answer relied on.

Opening a source re-checks access every time (the document row is read with the
user's own client, so RLS decides): a pharmacy library's source stops opening
for a member who left or was removed, with a message that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pharmgpt.services.errors import NotFound

from .loaders._common import LoadedDocument

_WORD = re.compile(r"[^\s|]+")
_GAP = r"[\s|*•\-]*"  # what may sit between two words of a quote in the document text
_PREFIX_WORDS = 12  # a quote whose tail was cleaned (a page footer removed) still marks its start


@dataclass(frozen=True)
class SourceView:
    """The text to show for one source, and the character spans of the quoted passages in it."""

    title: str
    text: str
    highlights: list[tuple[int, int]] = field(default_factory=list)

    def segments(self) -> list[tuple[str, bool]]:
        """The text cut into (piece, is_highlighted) in order, for rendering."""
        out, pos = [], 0
        for start, end in self.highlights:
            if start > pos:
                out.append((self.text[pos:start], False))
            out.append((self.text[start:end], True))
            pos = end
        if pos < len(self.text):
            out.append((self.text[pos:], False))
        return out


def _pattern(words: list[str]) -> re.Pattern | None:
    if not words:
        return None
    return re.compile(_GAP.join(re.escape(w) for w in words), re.IGNORECASE)


def find_quote(text: str, quote: str) -> tuple[int, int] | None:
    """Where `quote` sits in `text`, ignoring spacing, bullets and table bars; else its opening
    words."""
    words = _WORD.findall(quote)
    for candidate in (words, words[:_PREFIX_WORDS]):
        pattern = _pattern(candidate)
        m = pattern.search(text) if pattern else None
        if m:
            return m.start(), m.end()
    return None


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(title: str, text: str, quotes: list[str]) -> SourceView:
    spans = [s for s in (find_quote(text, q) for q in quotes if q.strip()) if s]
    return SourceView(title, text, _merge(spans))


def section_text(
    loaded: LoadedDocument, heading: str | None, code: str | None = None
) -> str | None:
    """The whole section a chunk came from: every part the loader emitted under that heading."""
    if not heading and not code:
        return None
    parts = [
        s.text
        for s in loaded.sections
        if (heading and s.heading == heading) or (code and not heading and s.code == code)
    ]
    return "\n\n".join(parts) or None


def page_text(loaded: LoadedDocument, page: int) -> str | None:
    parts = [s.text for s in loaded.sections if s.page == page]
    return "\n\n".join(parts) or None


def locate(
    loaded: LoadedDocument, source: dict, *, whole_section: bool = False
) -> SourceView | None:
    """The view of `source` (a stored sources entry): its page, or its section when it has no
    page or the whole section is asked for; None when neither can be found in the document."""
    name = source.get("filename") or "document"
    quotes = [q for q in (source.get("quotes") or []) if q] or [source.get("snippet") or ""]
    heading, page = source.get("section"), source.get("page")
    if page and not whole_section:
        text = page_text(loaded, int(page))
        if text:
            return highlight(f"{name}, page {page}", text, quotes)
    text = section_text(loaded, heading, source.get("section_code"))
    if text:
        return highlight(f"{name} — {heading or 'section'}", text, quotes)
    return None


def unavailable(source: dict) -> NotFound:
    """The error for a cited source whose document the user can no longer read."""
    name = source.get("filename") or "this document"
    if source.get("library"):
        return NotFound(
            f"{name} is no longer available to you: it is in a pharmacy library you are no "
            "longer a member of, or it was removed from it.",
            details={"document_id": source.get("document_id"), "library": source["library"]},
        )
    return NotFound(f"{name} is no longer available: it was deleted.")
