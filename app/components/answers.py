"""Showing answers: citation markers, the sources panel, the streamed text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import streamlit as st

from services.preferences import PREFERENCES

DEFAULT_MODEL = PREFERENCES["model"].default


_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")

DISCLAIMER = ("PharmGPT supports licensed pharmacists; it does not replace professional judgement. "
              "Check doses and interactions against the full prescribing information.")
OFFLINE_NOTE = ("No language model is configured, so answers quote the best-matching passages "
                "of your documents instead of writing new text.")

# The question behind the "Summarise this document" button offered after an upload.
SUMMARY_PROMPT = (
    "Summarise the document \"{filename}\" for a pharmacist: what it is and which drug(s) it covers, "
    "indications, dosing and administration (with units), contraindications and warnings, "
    "interactions, adverse effects, and use in special populations (renal or hepatic impairment, "
    "pregnancy and lactation, children, older adults). Cite the sources."
)


def summary_question(filename: str) -> str:
    return SUMMARY_PROMPT.format(filename=filename)


def format_citations(text: str, n_sources: int) -> str:
    """Turn the `[n]` markers that name a real source into small numbered badges."""
    if not n_sources:
        return text

    def badge(m: re.Match) -> str:
        n = int(m.group(1))
        return f":blue-badge[{n}]" if 1 <= n <= n_sources else m.group(0)

    return _CITATION.sub(badge, text)


def source_label(s: dict) -> str:
    name = s.get("filename") or "document"
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
    return (f"[{n}] " if n else "") + f"{name}{where}" + (f" — {section}" if section else "")


def render_sources(sources: list[dict], *, expanded: bool = False, open_page=None, key: str = "") -> None:
    """Numbered sources; `open_page(source)` (if given) shows the cited page's text on request."""
    if not sources:
        return
    with st.expander(f"Sources ({len(sources)})", expanded=expanded, icon=":material/menu_book:"):
        for s in sources:
            st.markdown(f"**{source_label(s)}**")
            snippet = " ".join((s.get("snippet") or "").split())
            if snippet:
                st.caption(snippet[:300] + ("…" if len(snippet) > 300 else ""))
            if open_page is not None and s.get("page") and s.get("document_id"):
                if st.button(f"Open page {s['page']}", key=f"open_page_{key}_{s.get('n')}",
                             icon=":material/open_in_new:", type="tertiary"):
                    open_page(s)


def model_choices(settings, current: str | None) -> list[str]:
    """The models the configured provider can use, the current one first."""
    options = [DEFAULT_MODEL, *(m.strip() for m in settings.llm_fallback_models.split(",") if m.strip())]
    if settings.openai_base_url:
        options.append(settings.openai_model)
    if current:
        options.insert(0, current)
    return list(dict.fromkeys(options))


def answer_text(events: Iterable[dict], sink: dict, on_first_token=None) -> Iterator[str]:
    """The text of an answer's events for `st.write_stream`; sources and the stored message go to `sink`."""
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
        elif kind == "done":
            sink["message"] = ev.get("message")
