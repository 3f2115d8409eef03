"""The pharmacology system prompt and the numbered-sources context."""

from __future__ import annotations

from collections.abc import Sequence

from pharmgpt.services.ports import Passage

from .owner_scope import citation_place, library_label

SYSTEM_PROMPT = """You are PharmGPT, an assistant for licensed pharmacists.
Answer from the numbered sources provided, which come from the pharmacist's own drug references.
Cover what the question needs among: mechanism of action, pharmacokinetics, dosing (with units),
interactions, adverse effects and special populations (renal/hepatic impairment, pregnancy and
lactation, paediatrics, older adults).
Cite every statement that comes from a source with its number in square brackets, e.g. [2].
Quote doses and limits exactly as the source gives them. If the sources disagree, say so.
{scope_rule}
End with one line: "For professional use; verify against the full prescribing information."
"""

STRICT_RULE = (
    "If the sources do not answer the question, say that the uploaded documents do not cover it; "
    "do not answer from general knowledge."
)
GENERAL_RULE = (
    "If the sources do not fully answer the question "
    "you may add general pharmacological knowledge, "
    "but mark those sentences with '(general knowledge, not from your documents)'."
)

NOT_COVERED = (
    "Your documents don't cover this question, so I won't guess. Upload a reference that covers it "
    "(for example the drug's prescribing information)."
)
_RELAX_OFFLINE = (
    "Turning off strict mode in Settings shows the closest passages anyway, labelled as possibly "
    "not answering the question."
)
_RELAX_MODEL = (
    "Turning off strict mode in Settings allows a general answer, "
    "clearly marked as not from your documents."
)


def not_covered(
    missing: list[str] | None = None,
    *,
    strict: bool = True,
    with_model: bool = False,
    in_flight: Sequence[str] = (),
) -> str:
    """The refusal: names the drugs no document is about; offers a toggle only if it helps;
    names the files still being processed (`in_flight`), which may answer once they are ready."""
    if missing:
        names = ", ".join(missing)
        text = (
            f"None of your documents is about {names}, "
            "so I won't answer from another drug's label. "
            f"Upload a reference for {names} (for example its prescribing information)."
        )
    else:
        text = NOT_COVERED
    if in_flight:
        more = len(in_flight) - 3
        names = ", ".join(in_flight[:3]) + (f" and {more} more" if more > 0 else "")
        they = "it shows" if len(in_flight) == 1 else "they show"
        text += (
            f" Still being processed, so not searched yet: {names}. "
            f"Ask again when {they} Ready on the Library page."
        )
    if strict:
        text += " " + (_RELAX_MODEL if with_model else _RELAX_OFFLINE)
    return text


def source_label(p: Passage) -> str:
    pages = p.pages
    where = (
        f", page {pages}" if pages and "-" not in pages else (f", pages {pages}" if pages else "")
    )
    section = p.metadata.get("heading")
    drugs = p.metadata.get("drugs")
    ocr = " [text read by OCR from a scan]" if p.metadata.get("ocr") else ""
    return (
        citation_place(p.filename, library_label(p.metadata))
        + where
        + (f" ({drugs})" if drugs else "")
        + (f" — {section}" if section else "")
        + ocr
    )


def build_messages(
    question: str,
    passages: list[Passage],
    history: list[dict],
    strict: bool = True,
    history_turns: int = 4,
) -> list[dict]:
    system = SYSTEM_PROMPT.format(scope_rule=STRICT_RULE if strict else GENERAL_RULE)
    sources = "\n\n".join(f"[{i}] {source_label(p)}\n{p.text}" for i, p in enumerate(passages, 1))
    msgs = [{"role": "system", "content": system}]
    for m in history[-history_turns * 2 :]:
        if m.get("role") in ("user", "assistant"):
            msgs.append({"role": m["role"], "content": m["content"][:4000]})
    msgs.append(
        {"role": "user", "content": f"Sources:\n\n{sources or '(none)'}\n\nQuestion: {question}"}
    )
    return msgs


def sources_payload(
    passages: list[Passage], snippet_chars: int = 300, quotes: dict[int, list[str]] | None = None
) -> list[dict]:
    """What a message stores about each cited source (DESIGN D8); `quotes`: source n -> quotes."""
    out = []
    for i, p in enumerate(passages, 1):
        out.append(
            {
                "n": i,
                "document_id": p.document_id,
                "chunk_id": p.chunk_id,
                "filename": p.filename,
                "library": library_label(
                    p.metadata
                ),  # "Pharmacy library", or None for the user's own
                "page": p.metadata.get("page_start"),
                "pages": p.pages or None,
                "section": p.metadata.get("heading"),
                "section_code": p.metadata.get("section_code"),
                "snippet": p.text[:snippet_chars],
                "drugs": p.metadata.get("drugs") or None,
                "kind": p.metadata.get("kind"),
                "ocr": bool(p.metadata.get("ocr")),
                "quotes": list(quotes.get(i, [])) if quotes else [],
                "score": round(p.score, 5),
                "similarity": None if p.similarity is None else round(p.similarity, 4),
            }
        )
    return out
