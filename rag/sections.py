"""What a label section is for, and what a question asks for: one vocabulary for both.

A chunk's section family comes from its SPL LOINC code when it has one, else
from its heading path (PDF, DOCX and Markdown headings of a label use the same
titles). A question's intent comes from deterministic phrase rules. Retrieval
boosts chunks whose family matches the intent (docs/rag.md gives each rule's
measured effect); the offline answer quotes from the best such section.
"""

from __future__ import annotations

import re

# LOINC section codes (FDA SPL) -> family
LOINC_FAMILY: dict[str, str] = {
    "34068-7": "dosing",  # dosage and administration
    "43678-2": "strengths",  # dosage forms and strengths
    "34067-9": "indications",
    "34070-3": "contraindications",
    "34066-1": "boxed_warning",
    "43685-7": "warnings",  # warnings and precautions
    "34071-1": "warnings",
    "42232-9": "warnings",  # precautions
    "34084-4": "adverse",
    "34073-7": "interactions",
    "43684-0": "populations",  # use in specific populations
    "42228-7": "pregnancy",
    "34077-8": "pregnancy",  # teratogenic effects
    "77290-5": "lactation",
    "34080-2": "lactation",  # nursing mothers
    "34081-0": "pediatric",
    "34082-8": "geriatric",
    "34088-5": "overdose",
    "34069-5": "storage",  # how supplied / storage and handling
    "44425-7": "storage",
    "55106-9": "ingredients",  # OTC active ingredient
    "51727-6": "ingredients",  # inactive ingredients
    "34089-3": "description",
    "50569-3": "ask_doctor",  # OTC: ask a doctor before use
    "50570-1": "contraindications",  # OTC: do not use
    "50567-7": "warnings",  # OTC: when using this product
    "50566-9": "stop_use",  # OTC: stop use and ask a doctor
    "34090-1": "pharmacology",
    "43679-0": "pharmacology",  # mechanism of action
    "43682-4": "pharmacology",  # pharmacokinetics
    "43683-2": "summary",  # recent major changes
    "42230-3": "patient_info",  # patient package insert
    "42231-1": "patient_info",  # medication guide
    "34076-0": "patient_info",  # information for patients
    "48780-1": "data",  # product data elements
    "48779-3": "data",  # indexing data elements
    "51945-4": "data",  # package label, principal display panel
    "53413-1": "data",  # OTC questions (a phone number)
}

# heading words -> family; most specific rules first (a heading path matches its last part first)
_HEADING_RULES: list[tuple[str, re.Pattern[str]]] = [
    (family, re.compile(pattern, re.IGNORECASE))
    for family, pattern in (
        ("lactation", r"\b(lactation|nursing mothers?)\b"),
        ("pregnancy", r"\bpregnan"),
        ("pediatric", r"\bpediatric|\bchildren\b"),
        ("geriatric", r"\bgeriatric|\belderly\b"),
        ("renal", r"\brenal\b"),
        ("hepatic", r"\bhepatic\b"),
        ("overdose", r"\boverdos"),
        ("boxed_warning", r"\bboxed warning\b|^warning:"),
        ("contraindications", r"\bcontraindications?\b|\bdo not use\b"),
        ("interactions", r"\binteractions?\b"),
        ("adverse", r"\badverse reactions?\b|\bside effects?\b"),
        ("strengths", r"\bdosage forms? (and|&) strengths?\b"),
        ("dosing", r"\bdosage\b|\bdosing\b|\bdirections\b|\badministration\b"),
        ("storage", r"\bhow supplied\b|\bstorage\b|\bstore\b"),
        ("ask_doctor", r"\bask a doctor\b"),
        ("stop_use", r"\bstop use\b"),
        ("ingredients", r"\bactive ingredients?\b|\binactive ingredients?\b|\bother information\b"),
        ("indications", r"\bindications?\b|\buses\b"),
        ("warnings", r"\bwarnings?\b|\bprecautions?\b"),
        ("pharmacology", r"\bpharmacology\b|\bmechanism\b|\bpharmacokinetics\b"),
        ("populations", r"\bspecific populations\b"),
        (
            "patient_info",
            r"\bpatient information\b|\bmedication guide\b|\bmedguide\b|\bpatient counseling\b",
        ),
        (
            "data",
            r"\bprincipal display panel\b|\bpackage label\b|\bdata elements\b|\bindexing\b"
            r"|^label title$",
        ),
    )
]

# question phrases -> the families that answer them
_INTENT_RULES: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    (families, re.compile(p, re.IGNORECASE))
    for families, p in (
        (("overdose",), r"\boverdos|\bantidote\b|\btoo much\b"),
        (("boxed_warning",), r"\bboxed warning\b|\bblack box\b"),
        (
            ("lactation", "populations", "pregnancy"),
            r"\bbreast.?feed|\bbreast milk\b|\blactat|\bnursing\b|\bnursed\b",
        ),
        (("pregnancy", "populations"), r"\bpregnan|\bconceive|\bteratogen"),
        (("storage",), r"\bstor(e|ed|age)\b|\brefrigerat|\btemperature\b|\bshelf\b"),
        (("ask_doctor", "warnings"), r"\bask a doctor\b|\bdoctor'?s advice\b|\bwhich conditions\b"),
        (("stop_use", "warnings"), r"\bstop(ped|ping)?\b|\bdiscontinu|\bcall a doctor\b"),
        (("warnings", "dosing"), r"\bscreen|\bbefore (starting|initiating|beginning)\b|\bmonitor"),
        (
            ("contraindications", "warnings"),
            r"\bcontraindicat|\bmust not\b|\bshould not (be )?(take|use|given)|\bsafe in\b",
        ),
        (
            ("interactions",),
            r"\binteract|\btogether with\b|\bcombined with\b|\bwhen adding\b|\bco-?administ"
            r"|\bwith (an? )?\w+ (pills?|inhibitors?)\b|\bon \w+ (is|and) starting\b",
        ),
        (("adverse", "warnings"), r"\bside effects?\b|\badverse\b|\breactions?\b"),
        (
            ("strengths", "storage", "description"),
            r"\bstrengths?\b|\bcome in\b|\bformulations?\b|\bhow supplied\b"
            r"|\bvolume\b|\bpen\b|\bsyringe\b|\bvial\b",
        ),
        (
            ("ingredients", "description"),
            r"\bingredients?\b|\bcontains?\b|\bhow much \w+ is in\b|\bexcipient",
        ),
        (
            ("renal", "dosing", "populations"),
            r"\b(renal|kidney|creatinine clearance|dialysis|crcl)\b",
        ),
        (("hepatic", "warnings", "dosing", "populations"), r"\b(hepatic|liver|cirrhosis)\b"),
        (
            ("geriatric", "warnings", "populations"),
            r"\b(elderly|geriatric|older adults?|older patients?|\d{2}-year-old)\b",
        ),
        (
            ("pediatric", "dosing"),
            r"\b(child|children|pediatric|paediatric|infant|kid|adolescent)s?\b",
        ),
        (("indications",), r"\bused for\b|\bindicat|\bwhat is \w+ for\b|\btreat\b"),
        (
            ("dosing",),
            r"\bdos(e|es|ing|age)\b|\bhow (often|much|many)\b|\bmaximum\b|\bmg\b|\btitrat"
            r"|\bstart(ed|ing)? (on|at)\b|\bswitch|\bgiven\b",
        ),
    )
]


def section_families(code: str | None, heading: str | None) -> frozenset[str]:
    """Every family one chunk's section belongs to: its code's, and each heading part's.

    "8 USE IN SPECIFIC POPULATIONS › 8.2 Lactation" is both populations and lactation;
    a label that files its dosing table under a nested "Boxed Warning" is still dosing.
    """
    found: set[str] = set()
    if code and code in LOINC_FAMILY:
        found.add(LOINC_FAMILY[code])
    for part in (heading or "").split(" › "):
        if part.strip().lower() == "highlights":
            found.add("summary")
            continue
        for family, pattern in _HEADING_RULES:
            if pattern.search(part):
                found.add(family)
                break
    return frozenset(found)


def section_family(code: str | None, heading: str | None) -> str | None:
    """One family for display: the most specific heading part's, else the code's."""
    for part in reversed((heading or "").split(" › ")):
        for family, pattern in _HEADING_RULES:
            if pattern.search(part):
                return family
    return LOINC_FAMILY.get(code or "")


# Sections a pharmacist's answer should not be quoted from when the full text is there:
# highlights and patient leaflets restate the label in shorter or lay words; data elements are
# not prose.
SECONDARY = frozenset({"summary", "patient_info"})
DATA = frozenset({"data"})


def question_intents(question: str) -> list[str]:
    """Section families that answer the question, most specific first (may be empty)."""
    out: list[str] = []
    for families, pattern in _INTENT_RULES:
        if pattern.search(question):
            out.extend(f for f in families if f not in out)
    return out
