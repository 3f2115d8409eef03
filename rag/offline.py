"""Offline answers: the answer-bearing sentences of the best section, quoted whole and cited.

Used when no LLM is configured (the embedded default needs no keys). It never
writes text of its own beyond the framing, so it cannot invent a dose. The
rules, each there because a pharmacist was misled without it:
- one drug: only the best passage's document is quoted, never a mix of labels;
- one section first: the section with the best-matching units leads, titled and cited;
- whole units: complete sentences, and a dosing table row kept whole
  ("children 6 to under 12 years | 2 teaspoonfuls (10 mL)") rather than dropped;
- document text that reads like instructions to an assistant is never quoted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pharmgpt.services.ports import Passage

from .lexical import tokenize
from .owner_scope import citation_place, library_label
from .sections import DATA, SECONDARY, section_families

LABEL = (
    "Offline mode — no language model is configured, so this quotes your documents "
    "where they best match the question:"
)
LABEL_UNSURE = (
    "Offline mode, strict mode off — these are the closest passages in your documents; "
    "they may not answer the question:"
)
DISCLAIMER = "For professional use; verify against the full prescribing information."

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|earlier|all)\b.{0,20}\b(instructions?|prompts?|rules?)"
    r"|\byou are (now )?(an?|the) (ai|assistant|chatbot|language model)\b|\bsystem prompt\b"
    r"|\b(as an ai|assistant:|new instructions?:)",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*(?:[-*•●▪◦]|\d+[.)])\s+")
_FOOTER = re.compile(r"\b(?:page \d+ of \d+|reference id: \d+)\b", re.IGNORECASE)


@dataclass
class OfflineAnswer:
    text: str
    quotes: dict[int, list[str]] = field(
        default_factory=dict
    )  # source number -> the units quoted from it


@dataclass
class _Unit:
    n: int  # source number
    heading: str
    text: str
    order: tuple[int, int]  # (source position in document, unit index): document order
    kind: str
    score: float = 0.0


def looks_like_instructions(text: str) -> bool:
    """Prompt-injection phrasing inside a document ("ignore previous instructions...")."""
    return bool(_INSTRUCTION.search(text))


def _clean(text: str) -> str:
    return " ".join(_FOOTER.sub(" ", _BULLET.sub("", text)).split())


def _sentences(text: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        for s in _SENT.split(" ".join(para.split())):
            s = _clean(s)
            if len(s) > 15:
                out.append(s)
    return out


def _table_rows(text: str) -> list[str]:
    """Markdown table rows as 'cell | cell' lines; the separator row and empty cells dropped."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if line:
                rows.extend(_sentences(line))
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):
            continue
        cells = [c for c in cells if c]
        if cells:
            rows.append(" | ".join(cells))
    return rows


def _units(n: int, p: Passage) -> list[_Unit]:
    heading = p.metadata.get("heading") or ""
    pos = int(p.metadata.get("position") or 0)
    kind = p.metadata.get("kind") or "text"
    texts = _table_rows(p.text) if kind == "table" else _sentences(p.text)
    return [
        _Unit(n, heading, t, (pos, i), kind)
        for i, t in enumerate(texts)
        if not looks_like_instructions(t)
    ]


_DOSE = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:mg|mcg|µg|g|ml|units?|teaspoonfuls?|tablets?)\b", re.IGNORECASE
)


def _score_units(
    question: str,
    units: list[_Unit],
    intents: Sequence[str],
    passages: list[Passage],
    expansion: str = "",
    ignore: Sequence[str] = (),
) -> None:
    """Rarer question words count more; words only in the heading or the expansion count half.

    The drug asked about is left out: every unit of its own label names it.
    """
    if not units:
        return
    # one tokenize call for every text: a call per unit cost ~5x as much (30 units: 1.7 against
    # 0.3 ms on a quiet machine, 13.5 against 1.3 loaded; each call builds its own stemmer)
    headings = list({u.heading for u in units})
    texts = [" ".join(ignore), question, expansion, *(u.text for u in units)]
    texts += [h.split(" › ")[-1] for h in headings]
    terms = [set(t) for t in tokenize(texts)]
    ignored = terms[0] if ignore else set()
    q_terms = terms[1] - ignored
    x_terms = terms[2] - q_terms - ignored if expansion else set()
    unit_terms = terms[3 : 3 + len(units)]
    heading_terms = dict(zip(headings, terms[3 + len(units) :], strict=True))
    all_terms = q_terms | x_terms
    df = {t: sum(1 for terms in unit_terms if t in terms) for t in all_terms}
    weight = {
        t: math.log(1 + len(units) / (1 + df[t])) * (1.0 if t in q_terms else 0.5)
        for t in all_terms
    }
    top_score = max(p.score for p in passages) or 1.0
    for u, terms in zip(units, unit_terms, strict=True):
        in_text = all_terms & terms
        in_heading = (all_terms & heading_terms[u.heading]) - in_text
        overlap = sum(weight[t] for t in in_text) + 0.5 * sum(weight[t] for t in in_heading)
        length = max(1, len(u.text.split()))
        u.score = overlap / (1 + length / 40)
        families = section_families(passages[u.n - 1].metadata.get("section_code"), u.heading)
        if intents and families & set(intents):
            u.score *= 1.6 if intents[0] in families else 1.3
        if "dosing" in intents[:2] and _DOSE.search(u.text):
            u.score *= 1.5  # a dosing question is answered by a dose
        if families & DATA:
            u.score *= 0.3
        elif families & SECONDARY:  # the full section says it whole; quote that
            u.score *= 0.6
        if u.score > 0:
            u.score += 0.2 * passages[u.n - 1].score / top_score  # retrieval's view


def extractive_answer(
    question: str,
    passages: list[Passage],
    *,
    intents: Sequence[str] = (),
    confident: bool = True,
    max_units: int = 4,
    expansion: str = "",
    drugs: Sequence[str] = (),
    one_document: bool = True,
) -> OfflineAnswer:
    if not passages:
        return OfflineAnswer("")
    lead_doc = passages[0].document_id
    numbered = [
        (n, p) for n, p in enumerate(passages, 1) if p.document_id == lead_doc or not one_document
    ]  # one drug
    every_unit = [u for n, p in numbered for u in _units(n, p)]
    _score_units(question, every_unit, intents, passages, expansion, drugs)
    units = [u for u in every_unit if u.score > 0]
    if not units:  # nothing overlaps word for word: the top passage's opening, cleaned
        first = passages[0]
        opening = _units(1, first)[:2] or [
            _Unit(1, first.metadata.get("heading") or "", _clean(first.text)[:400], (0, 0), "text")
        ]
        units = opening
    by_section: dict[str, list[_Unit]] = {}
    for u in units:
        by_section.setdefault(u.heading, []).append(u)

    def strength(group: list[_Unit]) -> float:
        best = sorted((u.score for u in group), reverse=True)[:2]
        return best[0] + 0.3 * sum(best[1:])

    sections = sorted(by_section.values(), key=strength, reverse=True)
    everything: dict[str, list[_Unit]] = {u.heading: [] for u in units}
    for u in every_unit:  # the whole of each candidate section, scored or not
        if u.heading in everything:
            everything[u.heading].append(u)
    chosen: list[_Unit] = []
    for group in sections:
        whole = {
            u.text: u for u in sorted(everything.get(group[0].heading, []), key=lambda u: u.order)
        }
        if (
            not chosen
            and whole
            and len(whole) <= max_units + 1
            and sum(len(t) for t in whole) <= 900
        ):
            chosen = list(whole.values())  # a short section reads best whole
            break
        top = sorted(group, key=lambda u: -u.score)
        floor = top[0].score * 0.45
        picked = [u for u in top if u.score >= floor][: max_units - len(chosen)]
        chosen.extend(sorted(picked, key=lambda u: u.order))  # read in the document's order
        if len(chosen) >= 2 or len(chosen) >= max_units:
            break
    seen: set[str] = set()
    chosen = [u for u in chosen if not (u.text in seen or seen.add(u.text))]
    first = passages[chosen[0].n - 1]
    title = chosen[0].heading.split(" › ")[-1] if chosen[0].heading else first.filename
    where = citation_place(first.filename, library_label(first.metadata)) + (
        f", page {first.pages}" if first.pages else ""
    )
    drugs = first.metadata.get("drugs")
    lines = [
        LABEL if confident else LABEL_UNSURE,
        "",
        f"**{title}** — {where}" + (f" ({drugs})" if drugs else "") + f" [{chosen[0].n}]",
        "",
    ]
    quotes: dict[int, list[str]] = {}
    for u in chosen:
        lines.append(f"{u.text} [{u.n}]")
        lines.append("")
        quotes.setdefault(u.n, []).append(u.text)
    lines.append(DISCLAIMER)
    return OfflineAnswer("\n".join(lines), quotes)
