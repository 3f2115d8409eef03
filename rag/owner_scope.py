"""Whose library a chunk lives in: one user's private library or one pharmacy's (issue 15).

Chroma has no row security, so every store and BM25 call names an owner scope and
each scope has its own collection (`u_<hex>` for a user, `p_<hex>` for a pharmacy)
and its own BM25 directory. Every chunk also carries its scope in its metadata
(`scope`, `scope_id`), checked on each hit before it leaves the store. Who may
search a pharmacy's scope is decided in Postgres (membership, RLS), never here:
the answer path reads the user's documents through their own client for each
question and searches only the scopes those documents live in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["user", "pharmacy"]
USER: Kind = "user"
PHARMACY: Kind = "pharmacy"

# collection prefixes: the active collection and the staging one a re-index fills (rag/reindex.py)
_PREFIX = {USER: ("u_", "s_"), PHARMACY: ("p_", "q_")}
_BY_PREFIX = {p: kind for kind, pair in _PREFIX.items() for p in pair}

LIBRARY_LABEL = {USER: None, PHARMACY: "Pharmacy library"}


@dataclass(frozen=True, order=True)
class OwnerScope:
    kind: Kind
    id: str  # the user's or the pharmacy's uuid, canonical form

    def __post_init__(self) -> None:
        if self.kind not in _PREFIX:
            raise ValueError(f"unknown owner scope {self.kind!r}")
        object.__setattr__(self, "id", str(uuid.UUID(str(self.id))))  # ValueError if not a uuid

    @classmethod
    def user(cls, user_id: str) -> OwnerScope:
        return cls(USER, user_id)

    @classmethod
    def pharmacy(cls, pharmacy_id: str) -> OwnerScope:
        return cls(PHARMACY, pharmacy_id)

    @classmethod
    def of(cls, owner: OwnerScope | str) -> OwnerScope:
        """A scope as given, or a bare user id as that user's private library."""
        return owner if isinstance(owner, OwnerScope) else cls.user(owner)

    @classmethod
    def of_document(cls, document: Any) -> OwnerScope:
        """Where a document's chunks live: its pharmacy's library, else its uploader's (a
        conversation's documents are the uploader's). `document`: a row dict or a Document."""
        get = document.get if isinstance(document, Mapping) else lambda k: getattr(document, k)
        pharmacy = get("pharmacy_id")
        return cls.pharmacy(pharmacy) if pharmacy else cls.user(get("user_id"))

    @property
    def hex(self) -> str:
        return uuid.UUID(self.id).hex

    @property
    def collection(self) -> str:
        return _PREFIX[self.kind][0] + self.hex

    @property
    def staging(self) -> str:
        return _PREFIX[self.kind][1] + self.hex

    @property
    def directory(self) -> str:
        """The BM25 index's folder name (a user's is the bare hex, as before pharmacies)."""
        return self.hex if self.kind == USER else _PREFIX[self.kind][0] + self.hex

    @property
    def library_label(self) -> str | None:
        """How a citation names where the source lives; None for the user's own library."""
        return LIBRARY_LABEL[self.kind]

    def stamp(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Mark a chunk's metadata with this scope (a user's chunk also keeps `user_id`)."""
        metadata["scope"] = self.kind
        metadata["scope_id"] = self.id
        if self.kind == USER:
            metadata["user_id"] = self.id
        else:
            metadata.pop("user_id", None)
        return metadata

    def owns(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a stored chunk belongs to this scope (chunks from before scopes are a user's)."""
        return scope_of_metadata(metadata) == self


def scope_of_metadata(metadata: Mapping[str, Any]) -> OwnerScope | None:
    kind, sid = metadata.get("scope"), metadata.get("scope_id")
    if kind is None and sid is None and metadata.get("user_id"):
        kind, sid = USER, metadata["user_id"]
    try:
        return OwnerScope(kind, sid)
    except (ValueError, TypeError):
        return None


def scope_of_collection(name: str) -> OwnerScope | None:
    """The scope an active or staging collection name belongs to; None for anything else."""
    kind = _BY_PREFIX.get(name[:2])
    rest = name[2:]
    if kind is None or len(rest) != 32 or any(c not in "0123456789abcdef" for c in rest):
        return None
    return OwnerScope(kind, rest)


def library_label(metadata: Mapping[str, Any]) -> str | None:
    scope = scope_of_metadata(metadata)
    return scope.library_label if scope else None


def citation_place(filename: str, library: str | None) -> str:
    """Where a source lives: "Pharmacy library: Formulary 2026.pdf"; the user's own file bare."""
    return f"{library}: {filename}" if library else filename


def source_place(source: Mapping[str, Any]) -> str:
    """The same for a stored source (a message's `sources` entry), with its page:
    "Pharmacy library: Formulary 2026.pdf, p. 12"."""
    place = citation_place(source.get("filename") or "document", source.get("library"))
    pages, page = source.get("pages"), source.get("page")
    if pages and "-" in str(pages):
        return f"{place}, pp. {pages}"
    return f"{place}, p. {pages or page}" if (pages or page) else place


def document_scopes(documents: Iterable[Any]) -> dict[str, OwnerScope]:
    """Document id -> the scope its chunks live in, for the documents a question may search."""
    return {
        str(d["id"] if isinstance(d, Mapping) else d.id): OwnerScope.of_document(d)
        for d in documents
    }
