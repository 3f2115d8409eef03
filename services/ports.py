"""The interfaces the use-cases need from the outside (retrieval, indexing, a chat model), and
the plain types that cross them.

Services own these contracts; `rag/` implements them (DESIGN: page → service → port). Nothing
here imports rag, a database client or a model library, so the use-cases in `answering.py` and
`ingestion.py` can be read, and tested, against any implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# ------------------------------------------------------------------ answering


@dataclass
class Passage:
    """One retrieved chunk with its scores: what an answer cites."""

    chunk_id: str
    document_id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused RRF score
    similarity: float | None = None  # cosine, when the dense side found it
    bm25: float | None = None  # when the lexical side found it
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.metadata.get("filename", "document")

    @property
    def pages(self) -> str:
        return self.metadata.get("pages", "") or ""


@dataclass(frozen=True)
class ScopedDocument:
    """A ready document an answer may use, with what it is about (from its metadata)."""

    id: str
    drugs: tuple[str, ...]
    products: tuple[
        str, ...
    ] = ()  # product names as the file gives them ("Children's Cough & Cold")
    user_id: str | None = None  # the uploader: a private document's chunks are in their library
    pharmacy_id: str | None = None  # a pharmacy's document: its chunks are in that library


@dataclass
class DrugScope:
    asked: list[str] = field(default_factory=list)  # the drugs the question is about
    inherited: bool = False  # taken from an earlier question
    document_ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # asked about, but no document is about them
    by_product: bool = False  # scoped by a product named in words

    @property
    def uncovered(self) -> bool:
        """The question names drugs and no document in scope is about any of them."""
        return bool(self.asked) and not self.document_ids


@dataclass(frozen=True)
class Question:
    """What the retriever plans an answer from: the question, the conversation so far and the
    documents in scope (the use-case chose them: the conversation's and the user's library)."""

    user_id: str
    text: str
    history: list[dict]  # earlier turns, {"role", "content"}, oldest first
    documents: list[ScopedDocument]
    top_k: int
    strict: bool
    with_model: bool  # False: offline, the retriever also writes the extractive answer
    chosen: bool = False  # the user picked these documents ("Summarise FILE"): no relevance gate
    in_flight: tuple[str, ...] = ()  # file names still being processed: a refusal mentions them


@dataclass
class AnswerPlan:
    query: str
    passages: list[Passage]  # the passages the answer may use, numbered 1..n in prompt and sources
    sources: list[dict[str, Any]]
    strict: bool
    covered: bool
    retrieved: list[Passage] = field(default_factory=list)  # all retrieved in scope, pre-gate
    scope: DrugScope = field(default_factory=DrugScope)
    intents: list[str] = field(default_factory=list)
    prepared: str | None = None  # a refusal or an offline answer, fixed before streaming
    messages: list[dict] = field(default_factory=list)  # the model's prompt, when one is called


@runtime_checkable
class Retriever(Protocol):
    """Question + documents in scope → the scored passages and numbered sources to answer from
    (and, offline or when nothing answers, the prepared text)."""

    async def plan(self, question: Question) -> AnswerPlan: ...


@dataclass(frozen=True)
class ModelChoice:
    """The model an answer uses: the user's preference when the provider offers it, else its
    default."""

    model: str
    available: list[str]
    notice: str | None = None  # set when a stored preference is not offered here


@runtime_checkable
class Provider(Protocol):
    """A chat model that streams text deltas (the answerer).

    `stream` is an async generator: callers may stop early (`break`, or better
    `contextlib.aclosing(...)` / `aclose()`), which closes the underlying HTTP response.
    """

    name: str

    async def catalogue(self) -> list[str]:
        """The models this provider offers, its default first (the one catalogue, issue 13)."""
        ...

    def stream(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int = 1024,
    ) -> AsyncIterator[str]: ...


# ------------------------------------------------------------------ indexing

Progress = Callable[[dict[str, Any]], Awaitable[None]]


class IndexingCancelled(Exception):
    """The indexer stopped because the caller said the job is no longer its own: write nothing."""


@dataclass(frozen=True)
class IndexResult:
    chunks: int
    pages: int | None
    warnings: list[str]
    ocr_pages: int
    identity: dict[str, list[str]]  # what the document is about ({"drugs", "products"})
    format: int  # the index format it was built with (re-indexed when older: pharmgpt reconcile)


@runtime_checkable
class DocumentIndexer(Protocol):
    """Parse, chunk, embed and store one document; drop documents' chunks."""

    async def index(
        self,
        document: dict[str, Any],
        data: bytes,
        *,
        progress: Progress,
        cancelled: Callable[[], bool],
    ) -> IndexResult:
        """`document`: its row (id, user_id, filename, file_type, conversation_id, metadata).
        Raises IngestionError for the file's own fault, IndexingCancelled when `cancelled()`."""
        ...

    async def discard(
        self, user_id: str, document_ids: list[str], *, pharmacy_id: str | None = None
    ) -> None:
        """Remove whatever was stored for these documents (a failed file, a deleted row);
        `pharmacy_id`: they are that pharmacy's (stored in its library, not the uploader's)."""
        ...
