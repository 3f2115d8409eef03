"""Builds the RAG side once per process and hooks it into the services (composition root).

rag/ holds the adapters (store, lexical index, retriever, planner, indexer); this module puts
them together with services' use-cases (AnswerService, IngestWorker), so no rag module imports
the container, the settings or a use-case (the import-linter contracts in pyproject)."""

from __future__ import annotations

import asyncio
import logging

from pharmgpt.rag import source_view
from pharmgpt.rag.embeddings import Embedder, shared_embedder
from pharmgpt.rag.gate import RelevanceGate
from pharmgpt.rag.index import RagIndex, is_outdated, live_documents
from pharmgpt.rag.indexer import IndexerLimits, RagIndexer
from pharmgpt.rag.lexical import LexicalIndex
from pharmgpt.rag.planner import AnswerPlanner
from pharmgpt.rag.reindex import Reindexer
from pharmgpt.rag.retriever import RetrievalConfig, Retriever
from pharmgpt.rag.store import ChunkStore
from pharmgpt.rag.warmup import Warmup
from pharmgpt.services.answering import AnswerService
from pharmgpt.services.config import Settings
from pharmgpt.services.container import Services
from pharmgpt.services.errors import NotFound, PharmGPTError
from pharmgpt.services.ingestion import IngestWorker

log = logging.getLogger(__name__)


def make_provider(settings: Settings):
    """Groq when a key is set, else an OpenAI-compatible server when a URL is set, else None
    (offline)."""
    fallbacks = [m.strip() for m in settings.llm_fallback_models.split(",") if m.strip()]
    if settings.groq_api_key:
        from pharmgpt.rag.llm import GroqProvider
        from pharmgpt.rag.llm.groq_provider import DEFAULT_MODELS

        return GroqProvider(
            settings.groq_api_key,
            models=[DEFAULT_MODELS[0], *fallbacks] if fallbacks else DEFAULT_MODELS,
        )
    if settings.openai_base_url:
        from pharmgpt.rag.llm import OpenAICompatProvider

        return OpenAICompatProvider(
            settings.openai_base_url, settings.openai_api_key, settings.openai_model
        )
    return None


class RagSystem:
    def __init__(
        self,
        services: Services,
        *,
        embedder: Embedder | None = None,
        provider=None,
        use_configured_provider: bool = True,
    ):
        s = services.settings
        self.services = services
        self.embedder = embedder or shared_embedder(s.embedder, s.data_dir, s.embedder_threads)
        host, port = s.chroma_host, s.chroma_port
        if not host:  # `pharmgpt run` may serve this data directory's store already: use it then
            from pharmgpt.localbase.chroma import running_server

            host, port = running_server(s.data_dir / "chroma") or (None, port)
        self.store = ChunkStore(
            path=s.data_dir / "chroma", host=host, port=port, embedder=self.embedder.name
        )
        self.lexical = LexicalIndex(s.data_dir / "lexical", self.store)
        self.reindexer = Reindexer(self.store, self.embedder)
        self.index = RagIndex(
            self.store, self.lexical, self.embedder, lexicon_dir=s.data_dir / "cache"
        )
        self.retriever = Retriever(
            self.store,
            self.lexical,
            self.embedder,
            RetrievalConfig(
                dense_weight=s.rrf_dense_weight,
                lexical_weight=s.rrf_lexical_weight,
                min_similarity=s.min_similarity,
                min_bm25=s.min_bm25,
            ),
        )
        if provider is None and use_configured_provider:
            provider = make_provider(s)
        self.planner = AnswerPlanner(
            self.retriever,
            lexicon=lambda: self.index.lexicon,
            gate=RelevanceGate(s.min_similarity, s.min_bm25),
        )
        self.engine = AnswerService(
            services.conversations,
            services.documents,
            services.preferences,
            self.planner,
            provider,
        )
        self.indexer = RagIndexer(self.index, IndexerLimits.from_settings(s))
        self.worker = IngestWorker(services.ingestion, services.documents, self.indexer)
        services.connect_indexer(self.indexer)
        self.warmup = Warmup(self.index, services.documents.get_shared_documents)
        self._worker_task: asyncio.Task | None = None
        self._reindex_task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    def start_worker(self) -> None:
        """The in-process worker of the embedded default, and the re-index of collections that
        another embedder built (in the background: queries keep working meanwhile)."""
        if self._worker_task is None:
            self._stop.clear()
            self._worker_task = asyncio.get_running_loop().create_task(
                self.worker.run_forever(self._stop)
            )
        self.start_reindex()

    def start_reindex(self) -> None:
        if self._reindex_task is None or self._reindex_task.done():
            self._reindex_task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.reindexer.run)
            )

    @property
    def reindex_progress(self) -> dict:
        return self.reindexer.progress.as_dict()

    async def stop_worker(self) -> None:
        if self._worker_task is not None:
            self._stop.set()
            self.worker.wake()
            await asyncio.wait_for(self._worker_task, 30)
            self._worker_task = None
        if self._reindex_task is not None:
            # stops between batches; a stopped user stays stale and resumes at the next start
            self.reindexer.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self._reindex_task), 60)
            except TimeoutError:
                log.warning("the re-index is still finishing a batch; it stops after it")
            self._reindex_task = None

    async def _loaded(self, user_id: str, document_id: str, page: int | None = None):
        """The user's document parsed again (the owner check is the user's own client, RLS), or
        None when its bytes are gone or no longer parse. NotFound when the row is not theirs or
        gone. `page`: read only that page of a PDF (a scan is not OCR'd again whole to show one
        page)."""
        doc = await self.services.documents.get_document(user_id, document_id)
        if not doc.sha256:
            return None

        def _read():
            from pharmgpt.rag.loaders import load_document

            return load_document(
                doc.filename,
                self.services.blobs.get(doc.sha256),
                doc.file_type,
                max_pages=self.services.settings.max_pages,
                only_page=page,
            )

        try:
            return await asyncio.to_thread(_read)
        except (FileNotFoundError, PharmGPTError):
            return None

    async def page_text(self, user_id: str, document_id: str, page: int) -> str | None:
        """The text of one page of the user's document; None when the page has no text."""
        loaded = await self._loaded(user_id, document_id, page)
        return source_view.page_text(loaded, page) if loaded else None

    async def source_view(self, user_id: str, source: dict, *, whole_section: bool = False):
        """What a cited source opens to (its page, or its section for a label without pages), with
        the quoted passages marked; None when it cannot be found. NotFound when the document is
        gone."""
        page = source.get("page") if not whole_section else None
        try:  # access is checked again on every opening (RLS): a removed member is refused
            loaded = await self._loaded(user_id, source["document_id"], int(page) if page else None)
        except NotFound as e:
            raise source_view.unavailable(source) from e
        return source_view.locate(loaded, source, whole_section=whole_section) if loaded else None

    async def reconcile(self) -> dict[str, int]:
        """Remove chunks without a live document row (pharmgpt reconcile)."""
        rows = [row async for row in self.services.documents.all_rows("id,user_id,pharmacy_id")]
        return await self.index.reconcile(live_documents(rows))

    async def outdated_documents(self, user_id: str | None = None) -> list[dict]:
        """Ready documents (of one user, or everyone's) indexed before the current INDEX_FORMAT."""
        return [
            row
            async for row in self.services.documents.all_rows("id,user_id,status,metadata")
            if (user_id is None or row["user_id"] == user_id) and is_outdated(row)
        ]

    async def reindex_outdated(self, user_id: str | None = None) -> int:
        """Queue every outdated document for ingestion again; the worker rebuilds its chunks with
        drugs and sections, and the documents page shows the progress. Returns how many."""
        queued = 0
        for row in await self.outdated_documents(user_id):
            queued += await self.services.documents.requeue_for_reindex(row["id"], row["user_id"])
        if queued:
            self.worker.wake()
        return queued
