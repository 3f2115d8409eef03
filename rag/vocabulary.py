"""Lay words a pharmacist types -> the words labels use, added to the retrieval query.

Labels say "oral contraceptives", "hematologic", "lactation"; people ask about
"birth control pills", "blood problems", "breastfeeding". The expansion only adds
words (the question's own words still count), and only to what is searched.
"""

from __future__ import annotations

import re

_EXPANSIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), words)
    for p, words in (
        (
            r"\bbirth control\b|\bthe pill\b|\bcontraceptive pills?\b",
            "oral contraceptives norethindrone ethinyl estradiol",
        ),
        (
            r"\bblood (problems?|disorders?|counts?)\b",
            "hematologic abnormalities cytopenia pancytopenia",
        ),
        (r"\bblood thinners?\b", "anticoagulants warfarin"),
        (r"\bbreast.?feed\w*|\bbreast milk\b", "lactation nursing human milk breastfed infant"),
        (r"\bpregnan\w*", "pregnancy fetal"),
        (r"\bkidneys?\b", "renal impairment"),
        (r"\bliver\b", "hepatic"),
        (r"\bheart failure\b", "congestive heart failure CHF"),
        (r"\bantidote\b", "overdosage treatment"),
        (r"\boverdose\b", "overdosage"),
        (r"\bscreen(ing)?\b", "test evaluate prior to initiating"),
        (r"\bstor(e|ed|age)\b", "storage refrigerated temperature"),
        (r"\bhow often\b", "every hours doses"),
        (r"\b(older|elderly|\d{2}-year-old)\b", "geriatric elderly patients 65 years"),
        (r"\bside effects?\b", "adverse reactions"),
        (r"\bsugar\b|\bglucose\b", "glucose HbA1c diabetes"),
        (r"\bstrengths?\b", "dosage forms strengths tablets mg"),
    )
)


def expand_query(question: str) -> str:
    extra = [words for pattern, words in _EXPANSIONS if pattern.search(question)]
    return f"{question} {' '.join(extra)}" if extra else question
