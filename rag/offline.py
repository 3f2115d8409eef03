"""Offline answers: the best-matching sentences of the retrieved passages, cited.

Used when no LLM is configured (the embedded default needs no keys). It never
writes text of its own beyond the framing, so it cannot invent a dose.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator

from .lexical import tokenize
from .retriever import Passage

LABEL = "Offline mode — no language model is configured, so these are the passages from your documents " \
        "that best match your question:"
DISCLAIMER = "For professional use; verify against the full prescribing information."

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(•\-])")


def _sentences(text: str) -> list[str]:
    text = " ".join(text.split())
    return [s.strip() for s in _SENT.split(text) if len(s.strip()) > 20]


def _tabular(sentence: str) -> bool:
    """Rows of a table flattened into text (numbers, units, abbreviations) read badly as prose."""
    chars = [c for c in sentence if not c.isspace()]
    digits = sum(c.isdigit() for c in chars)
    words = sentence.split()
    short = sum(1 for w in words if len(w.strip(".,;:()%")) <= 3)
    return bool(chars) and (digits / len(chars) > 0.12 or (len(words) > 12 and short / len(words) > 0.55))


def extractive_answer(question: str, passages: list[Passage], max_sentences: int = 4) -> str:
    q_terms = set(tokenize([question])[0])
    if not passages:
        return ""
    # rarer query terms (fewer passages contain them) count more
    df = {t: sum(1 for p in passages if t in set(tokenize([p.text])[0])) for t in q_terms}
    weight = {t: math.log(1 + len(passages) / (1 + df[t])) + 0.1 for t in q_terms}
    scored = []
    prose = [n for n, p in enumerate(passages, 1) if p.metadata.get("kind") != "table"]
    for n, p in enumerate(passages, 1):
        if prose and n not in prose:  # table rows read badly as sentences: quote prose when there is any
            continue
        for pos, s in enumerate(_sentences(p.text)):
            if _tabular(s):
                continue
            tokens = tokenize([s])[0]
            terms = set(tokens)
            score = sum(weight[t] for t in q_terms & terms) / (1 + len(tokens) / 30)  # dense beats long
            if score > 0:
                scored.append((score - 0.01 * pos - 0.05 * n, n, s))
    scored.sort(reverse=True)
    chosen, per_source = [], {}
    for _score, n, s in scored:
        if per_source.get(n, 0) >= 2 or any(s == c[1] for c in chosen):
            continue
        chosen.append((n, s))
        per_source[n] = per_source.get(n, 0) + 1
        if len(chosen) >= max_sentences:
            break
    if not chosen:  # nothing overlaps word-for-word: fall back to the top passage's opening
        first = _sentences(passages[0].text)[:2] or [passages[0].text[:400]]
        chosen = [(1, s) for s in first]
    lines = [LABEL, ""] + [f"- {s} [{n}]" for n, s in chosen] + ["", DISCLAIMER]
    return "\n".join(lines)


async def stream_text(text: str) -> AsyncIterator[str]:
    """Yield a prepared answer in word-sized pieces, like a model would."""
    for piece in re.findall(r"\S+\s*|\s+", text):
        yield piece
