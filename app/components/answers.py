"""Showing answers: citation markers, the sources panel, the streamed text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import streamlit as st
from pharmgpt.rag.owner_scope import citation_place

from . import citations, ui

_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")
# Markdown that would make the browser fetch or follow something a document (or a model) wrote:
# images of any kind, and links to anything but http(s) (data:, javascript:, relative paths).
_IMAGE = re.compile(r"!\[([^\]\n]*)\](?:\([^)\n]*\)|\[[^\]\n]*\])")
_UNSAFE_LINK = re.compile(r"\[([^\]\n]*)\]\((?!\s*https?://)[^)\n]*\)")
_UNSAFE_AUTOLINK = re.compile(r"<((?!https?://)[a-z][a-z0-9+.-]*:[^>\s]*)>", re.IGNORECASE)
_HOLD_BACK = 300  # how far back an unfinished `![...](...)` may start while an answer streams

DISCLAIMER = (
    "PharmGPT supports licensed pharmacists; it does not replace professional judgement. "
    "Check doses and interactions against the full prescribing information."
)
OFFLINE_NOTE = (
    "No language model is configured, so answers quote the best-matching passages "
    "of your documents instead of writing new text."
)

# The question behind the "Summarise this document" button offered after an upload.
SUMMARY_PROMPT = (
    'Summarise the document "{filename}" for a pharmacist: what it is and which drug(s) it covers, '
    "indications, dosing and administration (with units), contraindications and warnings, "
    "interactions, adverse effects, and use in special populations (renal or hepatic impairment, "
    "pregnancy and lactation, children, older adults). Cite the sources."
)


def summary_question(filename: str) -> str:
    return SUMMARY_PROMPT.format(filename=filename)


def safe_markdown(text: str) -> str:
    """Answer text with images dropped (alt text kept) and non-http(s) links made plain text."""
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _UNSAFE_LINK.sub(lambda m: m.group(1), text)
    return _UNSAFE_AUTOLINK.sub(lambda m: m.group(1).replace(":", "\\:"), text)


_OPENER = re.compile(r"!?\[|<|!$")
_COMPLETE = re.compile(r"!?\[[^\]\n]*\](?:\([^)\n]*\)|\[[^\]\n]*\]|[^(\[])|<[^>\n]*>|[^\n]*\n")


def _open_construct(text: str) -> int | None:
    """Where the first image/link/autolink that may still be unfinished starts, if one does."""
    base = max(0, len(text) - _HOLD_BACK)
    for m in _OPENER.finditer(text, base):
        if not _COMPLETE.match(text, m.start()):
            return m.start()
    return None


def safe_stream(pieces: Iterable[str]) -> Iterator[str]:
    """`safe_markdown` over streamed text. The page renders everything streamed so far as one
    Markdown text, so a tail that may open an image or link is held back until it is complete
    (or longer than `_HOLD_BACK`): no construct ever spans two sanitised pieces."""
    buf = ""
    for piece in pieces:
        buf += piece
        start = _open_construct(buf)
        cut = len(buf) if start is None else start
        if cut:
            yield safe_markdown(buf[:cut])
            buf = buf[cut:]
    if buf:
        yield safe_markdown(buf)


def format_citations(text: str, n_sources: int) -> str:
    """Turn the `[n]` markers that name a real source into small numbered badges."""
    if not n_sources:
        return text

    def badge(m: re.Match) -> str:
        n = int(m.group(1))
        return f":blue-badge[{n}]" if 1 <= n <= n_sources else m.group(0)

    return _CITATION.sub(badge, text)


def source_label(s: dict) -> str:
    name = citation_place(
        s.get("filename") or "document", s.get("library")
    )  # "Pharmacy library: …"
    pages = s.get("pages")
    page = s.get("page")
    if pages and "-" in str(pages):
        where = f", pages {pages}"
    elif pages or page:
        where = f", page {pages or page}"
    else:
        where = ""
    section = s.get("section")
    n = s.get("n")
    ocr = " · OCR" if s.get("ocr") else ""  # read from a scan: worth checking against the page
    return (f"[{n}] " if n else "") + f"{name}{where}" + (f" — {section}" if section else "") + ocr


def render_sources(
    sources: list[dict],
    *,
    expanded: bool = False,
    open_source=None,
    live_ids: set[str] | None = None,
    key: str = "",
) -> None:
    """Numbered sources. `open_source(source, whole_section)` (if given) opens one to its page or
    section; a source whose document is not in `live_ids` says it was deleted and opens nothing."""
    if not sources:
        return
    with st.expander(f"Sources ({len(sources)})", expanded=expanded, icon=":material/menu_book:"):
        for s in sources:
            st.markdown(f"**{source_label(s)}**")
            snippet = " ".join((s.get("snippet") or "").split())
            if snippet:
                st.text(snippet[:300] + ("…" if len(snippet) > 300 else ""))
            doc_id = s.get("document_id")
            if open_source is None or not doc_id:
                continue
            if live_ids is not None and doc_id not in live_ids:
                st.caption(f":gray-badge[{citations.DELETED}]")
                continue
            cols = st.columns(2 if s.get("page") and s.get("section") else 1)
            if s.get("page"):
                if cols[0].button(
                    f"Open page {s['page']}",
                    key=f"open_page_{key}_{s.get('n')}",
                    icon=":material/open_in_new:",
                    type="tertiary",
                ):
                    open_source(s, False)
            if s.get("section"):
                label = "Whole section" if s.get("page") else "Open section"
                if cols[-1].button(
                    label,
                    key=f"open_section_{key}_{s.get('n')}",
                    icon=":material/article:",
                    type="tertiary",
                ):
                    open_source(s, True)


def model_picker(ctx, preferred: str | None):
    """The provider's catalogue and the model answers use now (rag.llm.ModelChoice), or None
    offline or when the server can't say (the error is shown). Its `notice` says when a saved
    preference is not offered and the default is used instead."""
    if ctx.rag.engine.provider is None:
        return None
    return ui.call(ctx.rag.engine.choose_model(preferred))


def answer_text(events: Iterable[dict], sink: dict, on_first_token=None) -> Iterator[str]:
    """The text of an answer's events for `st.write_stream`, made safe to render as it streams;
    sources and the stored message go to `sink`."""
    return safe_stream(_answer_tokens(events, sink, on_first_token))


def _answer_tokens(events: Iterable[dict], sink: dict, on_first_token=None) -> Iterator[str]:
    first = True
    for ev in events:
        kind = ev.get("type")
        if kind == "sources":
            sink["sources"] = ev.get("sources") or []
            sink["covered"] = ev.get("covered")
        elif kind == "token":
            if first and on_first_token is not None:
                on_first_token()
            first = False
            yield ev.get("text", "")
        elif kind == "notice":
            sink["notice"] = ev.get("text")
        elif kind == "done":
            sink["message"] = ev.get("message")
