"""Which drugs a text is about: an offline lexicon of generic and brand names.

The names come from the `drug-named-entity-recognition` package (MIT; DrugBank,
MeSH, MedlinePlus and NHS names with brand synonyms, about 107k surface forms
for 20k drugs), read straight from its data file so none of that package's
import-time work or optional web lookups run. Its pickle takes seconds to
unpack, so the first use writes a compact cache (surface form -> canonical
names) beside the other derived data and later processes load that in
milliseconds. Pharmacologic classes (MeSH D27 "chemical actions and uses",
e.g. "statin") are not drugs: naming a class must not scope a question.

Why this list and not a hand-written one: a hand-written list covers the drugs
its author thought of; the product is asked about any drug a pharmacy stocks.
The documents' own declared names (SPL product data) are added per user, so a
drug the lexicon lacks is still recognised once a document about it exists.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.resources
import logging
import os
import pickle
import re
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pharmgpt.localbase.files import open_private, private_dir

log = logging.getLogger(__name__)

_PACKAGE = "drug_named_entity_recognition"
_DATA_FILE = "drug_ner_dictionary.pkl.bz2"
_CACHE_VERSION = 1
MAX_NGRAM = 4

# Salt and form words: "diphenhydramine HCl" is diphenhydramine.
_SALTS = frozenset(
    "hcl hydrochloride hydrobromide sodium potassium calcium magnesium sulfate sulphate maleate "
    "mesylate tartrate citrate acetate phosphate succinate fumarate besylate bromide chloride "
    "anhydrous trihydrate monohydrate dihydrate hydrate decanoate lactate gluconate".split()
)
_WORD = re.compile(r"[a-z0-9][a-z0-9\-']*")


def words(text: str) -> list[str]:
    """Lower-case word tokens, hyphenated names kept whole ("adalimumab-atto")."""
    return [w.strip("'-") for w in _WORD.findall(text.lower()) if w.strip("'-")]


class DrugLexicon:
    """Surface form (lower case, 1-4 words) -> canonical generic names."""

    def __init__(self, variants: dict[str, tuple[str, ...]]):
        self.variants = variants

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_package(cls) -> DrugLexicon:
        source = importlib.resources.files(_PACKAGE).joinpath(_DATA_FILE)
        with bz2.open(source, "rb") as f:  # noqa: S301 - the package's own data file
            data = pickle.load(f)  # noqa: S301
        canon = data["drug_canonical_to_data"]
        variants: dict[str, tuple[str, ...]] = {}
        for variant, names in data["drug_variant_to_canonical"].items():
            kept = tuple(n for n in names if _is_drug(canon.get(n, {})))
            if kept and len(variant) >= 3 and len(variant.split()) <= MAX_NGRAM:
                variants[variant] = kept
        return cls(variants)

    @classmethod
    def load(cls, cache_dir: Path | None) -> DrugLexicon:
        """From the compact cache when it matches the installed package's data, else rebuilt."""
        if cache_dir is None:
            return cls.from_package()
        stamp = _source_stamp()
        cache = cache_dir / f"drug-lexicon-v{_CACHE_VERSION}.pickle"
        try:
            with open(cache, "rb") as f:
                saved = pickle.load(f)  # noqa: S301 - our own file under the data directory
            if saved.get("stamp") == stamp:
                return cls(saved["variants"])
        except (OSError, pickle.PickleError, EOFError, KeyError, AttributeError):
            pass
        lexicon = cls.from_package()
        try:
            private_dir(cache_dir)
            tmp = cache.with_suffix(".tmp")
            with open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as f:
                pickle.dump({"stamp": stamp, "variants": lexicon.variants}, f, protocol=5)
            tmp.replace(cache)
        except OSError as e:  # a read-only data directory only costs the next start some seconds
            log.warning("drug lexicon cache not written: %s", e)
        return lexicon

    # ---- matching ------------------------------------------------------------------------------
    def mentions(self, text: str, extra: dict[str, str] | None = None) -> Counter[str]:
        """Canonical drug -> how often the text names it (longest match first, no overlaps).

        `extra` adds surface forms (lower case) -> canonical, e.g. the names a user's
        documents declare that the lexicon does not know.
        """
        tokens = words(text)
        found: Counter[str] = Counter()
        i = 0
        while i < len(tokens):
            for n in range(min(MAX_NGRAM, len(tokens) - i), 0, -1):
                form = " ".join(tokens[i : i + n])
                names = self.variants.get(form) or (
                    (extra[form],) if extra and form in extra else None
                )
                if names:
                    for name in names:
                        found[name] += 1
                    i += n
                    break
            else:
                i += 1
        return found

    def find(self, text: str, extra: dict[str, str] | None = None) -> list[str]:
        """The drugs a short text (a question, a title) names, in order of first mention."""
        return list(self.mentions(text, extra))

    def canonical(self, name: str) -> str:
        """Normalise a declared product or ingredient ("Diphenhydramine HCl" -> diphenhydramine)."""
        found = self.find(name)
        if found:
            return found[0]
        kept = [w for w in words(name) if w not in _SALTS]
        return " ".join(kept) or name.strip().lower()

    def surface_forms(self, drugs: Iterable[str]) -> dict[str, str]:
        """Names (lower case) -> canonical for drugs outside the lexicon, so questions find them."""
        return {d: d for d in drugs if d not in self._known}

    @property
    def _known(self) -> set[str]:
        known = getattr(self, "_known_cache", None)
        if known is None:
            known = self._known_cache = {n for names in self.variants.values() for n in names}
        return known


def _is_drug(data: dict) -> bool:
    """A specific drug, not a pharmacologic class (MeSH D27 without a DrugBank id)."""
    tree = data.get("mesh_tree") or []
    if data.get("drugbank_id") or not tree:
        return True
    return not all(str(t).startswith("D27") for t in tree)


def _source_stamp() -> str:
    source = importlib.resources.files(_PACKAGE).joinpath(_DATA_FILE)
    return hashlib.sha256(source.read_bytes()).hexdigest()


def document_drugs(
    lexicon: DrugLexicon,
    declared: Iterable[str],
    text: str,
    *,
    share: float = 0.3,
    min_count: int = 2,
) -> list[str]:
    """What a document is about.

    Declared names (an SPL label's product data) decide when present. Otherwise the
    drugs the text names most: a label mentions many other drugs (interactions),
    so only those named at least `share` as often as the most-named one count.
    """
    names: list[str] = []
    unresolved: list[str] = []
    for name in declared:
        found = lexicon.find(name)
        for c in found:
            if c not in names:
                names.append(c)
        if not found:
            unresolved.append(lexicon.canonical(name))
    if names or unresolved:  # a brand the lexicon lacks stands for itself only if nothing resolved
        return names or unresolved[:3]
    counts = lexicon.mentions(text)
    if not counts:
        return []
    top = counts.most_common(1)[0][1]
    return [d for d, n in counts.most_common() if n >= max(min_count, share * top)][:8] or (
        [counts.most_common(1)[0][0]] if top >= 1 and len(counts) == 1 else []
    )


_LOCK = threading.Lock()
_SHARED: dict[str, DrugLexicon] = {}


def shared_lexicon(cache_dir: Path | None = None) -> DrugLexicon:
    """One lexicon per process (it is read-only), loaded on first use."""
    key = str(cache_dir)
    with _LOCK:
        lexicon = _SHARED.get(key)
        if lexicon is None:
            lexicon = _SHARED[key] = DrugLexicon.load(cache_dir)
        return lexicon
