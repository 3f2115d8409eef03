"""Which documents may answer a question: those about the drug it asks about.

A pharmacist who reads another drug's dose is the worst outcome, so a question
that names drugs searches only documents about them; one that names a drug no
document is about gets the not-covered answer naming it. A follow-up naming no
drug ("and in pregnancy?") inherits the drugs of the conversation's latest
question that named one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pharmgpt.services.ports import DrugScope, ScopedDocument

from .drugs import DrugLexicon, words
from .retriever import is_follow_up


def scope_by_drug(
    lexicon: DrugLexicon,
    question: str,
    earlier_questions: Sequence[str],
    documents: Iterable[ScopedDocument],
) -> DrugScope:
    documents = list(documents)
    library_drugs = {d for doc in documents for d in doc.drugs}
    extra = lexicon.surface_forms(library_drugs)
    asked = lexicon.find(question, extra)
    inherited = False
    if not asked and is_follow_up(question):  # a new topic does not inherit the last drug
        for earlier in reversed(earlier_questions):
            asked = lexicon.find(earlier, extra)
            if asked:
                inherited = True
                break
    if (
        not asked
    ):  # names no drug: a product named in words, else every document; one drug is quoted
        by_product = _named_products(question, documents)
        return DrugScope(
            document_ids=by_product or [d.id for d in documents], by_product=bool(by_product)
        )
    ids = [d.id for d in documents if set(d.drugs) & set(asked)]
    return DrugScope(
        asked=asked,
        inherited=inherited,
        document_ids=ids,
        missing=[a for a in asked if a not in library_drugs],
    )


# words every product name may carry; they say nothing about which product
_GENERIC = frozenset(
    """tablets tablet capsules capsule injection solution oral syrup suspension liquid children
childrens child adult adults night time day extra strength maximum relief cream ointment film
coated extended release kit pen prefilled syringe vial for and with the of plus formula original
drops spray usp""".split()
)


def _distinctive(text: str) -> set[str]:
    return {w for w in words(text) if len(w) >= 4 and w not in _GENERIC}


def _named_products(question: str, documents: list[ScopedDocument]) -> list[str]:
    """Documents whose product name the question uses ("the cough syrup" -> "...Cold and Cough")."""
    asked = _distinctive(question)
    best, ids = 0, []
    for doc in documents:
        overlap = (
            len(asked & set().union(*(_distinctive(p) for p in doc.products)))
            if doc.products
            else 0
        )
        if overlap > best:
            best, ids = overlap, [doc.id]
        elif overlap == best and overlap:
            ids.append(doc.id)
    return ids
