"""The app's chunk store and lexical index as the migration steps use them, with memory kept
flat over thousands of users.

The embedded Chroma client keeps the HNSW index of every collection it touched in memory
(about 3 MB each) until it is closed; a run, a verify or a rollback touches one collection per
user, so each of them lets go of the client every few users (`StoreRecycler`). The BM25 index of
a user is on disk (the app loads it lazily), so it is evicted from memory once written.
"""

from __future__ import annotations

STORE_RECYCLE = 20  # users handled before the embedded Chroma client is closed (and reopened)


def store_for(settings):
    """The same store and lexical index the app uses (pharmgpt/rag_system.py)."""
    from pharmgpt.rag.embeddings import shared_embedder
    from pharmgpt.rag.lexical import LexicalIndex
    from pharmgpt.rag.store import ChunkStore

    embedder = shared_embedder(settings.embedder, settings.data_dir, settings.embedder_threads)
    store = ChunkStore(
        path=settings.data_dir / "chroma",
        host=settings.chroma_host,
        port=settings.chroma_port,
        embedder=embedder.name,
    )
    return store, LexicalIndex(settings.data_dir / "lexical", store)


class StoreRecycler:
    """Call `done(user_id)` after each user: every `every` users the client is closed."""

    def __init__(self, store, lexical=None, every: int = STORE_RECYCLE):
        self.store, self.lexical, self.every = store, lexical, max(1, every)
        self._touched = 0

    def done(self, user_id: str) -> None:
        if self.lexical is not None:
            self.lexical.evict(user_id)
        self._touched += 1
        if self._touched < self.every or getattr(self.store, "host", None):
            return  # a Chroma server holds its own memory
        self._touched = 0
        self.store.close()
