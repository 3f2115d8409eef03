"""The services of one process, wired together over one backend.

Built by the composition root (pharmgpt/wiring.py), which starts the embedded local
stack first when no Supabase project is configured (DESIGN D1).
"""

from __future__ import annotations

import asyncio
import logging

from .admin import AdminService
from .audit import AuditService
from .backend import Backend
from .blobs import BlobStore
from .cache import TTLCache
from .config import Settings
from .conversations import ConversationService
from .documents import DocumentService
from .errors import ConfigError
from .ingestion import IngestionService
from .metrics import Metrics
from .outbox import Outbox
from .pharmacies import PharmacyService
from .ports import DocumentIndexer
from .preferences import PreferenceService
from .sessions import SessionService
from .signin import SignInService
from .users import UserService

log = logging.getLogger(__name__)


class Services:
    def __init__(self, settings: Settings, backend: Backend):
        self.settings = settings
        self.backend = backend
        self.metrics = Metrics(slow_ms=settings.slow_call_ms)
        self.cache = TTLCache(
            {
                "convs": settings.cache_ttl_conversations_s,
                "conv": settings.cache_ttl_conversations_s,
                "docs": settings.cache_ttl_documents_s,
                "user": settings.cache_ttl_user_s,
            },
            settings.cache_max_entries,
            settings.cache_memory_limit_mb,
        )
        self.outbox = Outbox(settings.outbox_path)
        self.blobs = BlobStore(settings.data_dir / "blobs")
        self.audit = AuditService(backend, self.metrics)
        self.sessions = SessionService(backend, settings, self.metrics, self.audit)
        self.users = UserService(
            backend, settings, self.cache, self.metrics, self.audit, self.sessions
        )
        self.signin = SignInService(self.users, self.sessions)
        self.conversations = ConversationService(
            backend, self.cache, self.metrics, self.audit, self.outbox
        )
        self.ingestion = IngestionService(backend, settings)
        self.documents = DocumentService(
            backend, settings, self.cache, self.metrics, self.audit, self.blobs, self.ingestion
        )
        self.preferences = PreferenceService(backend, self.metrics)
        self.admin = AdminService(
            backend, self.cache, self.metrics, self.audit, self.sessions, self.ingestion
        )
        self.pharmacies = PharmacyService(backend, self.metrics, self.audit, self.documents)
        self.users.release_blobs = self.documents.release_blobs  # bytes an account's documents
        self._flusher: asyncio.Task | None = None

    def connect_indexer(self, indexer: DocumentIndexer) -> None:
        """Deleting documents (one, a conversation's, a pharmacy's, an account's) drops their
        chunks too."""
        self.documents.use_indexer(indexer)
        self.conversations.use_indexer(indexer)
        self.users.use_indexer(indexer)

    @classmethod
    async def create(cls, settings: Settings) -> Services:
        """The services over a configured store. The embedded local stack is started by the
        composition root (pharmgpt/wiring.py), which passes its URL and keys in `settings`."""
        if settings.embedded:
            raise ConfigError(
                "No Supabase URL: start the local stack first (pharmgpt.wiring.build_services)."
            )
        backend = Backend(settings)
        await backend.start()
        return cls(settings, backend)

    def start_outbox_flusher(self, interval_s: float = 5.0) -> None:
        """Deliver held messages in the background once the store answers again."""

        async def loop():
            while True:
                await asyncio.sleep(interval_s)
                try:
                    if self.outbox.pending():
                        await self.conversations.flush_outbox()
                except Exception as e:  # keep trying; the next round may succeed
                    log.warning("outbox flush: %s", e)

        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(loop())

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.backend.close()
        self.outbox.close()
