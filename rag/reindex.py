"""Re-embed a user's chunks when the configured embedder changes (rag/store.py).

Runs in the background (the app's in-process worker starts it) or in the
foreground (`pharmgpt reindex`). Chunk texts and metadata are read from the
stale collection and re-embedded into the staging one in batches; writes
that arrive meanwhile already go there, and deletions remove from both, so
under the user's store lock a batch only copies chunks that still exist
and are not there yet. When every chunk is copied, the staging collection
replaces the stale one. Until then dense search sees only what is
re-embedded, while BM25 (which needs no vectors) sees everything.
Progress is kept in `ReindexProgress` and logged per user.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .embeddings import Embedder
from .index import stored_embedding_text
from .owner_scope import OwnerScope
from .store import ChunkStore, collection_name

log = logging.getLogger(__name__)


@dataclass
class ReindexProgress:
    users_total: int = 0
    users_done: int = 0
    chunks_total: int = 0  # of the user being re-indexed
    chunks_done: int = 0
    current_user: str | None = None
    running: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Reindexer:
    def __init__(self, store: ChunkStore, embedder: Embedder, batch: int = 256):
        if store.embedder != embedder.name:
            raise ValueError(f"the store serves {store.embedder}, the embedder is {embedder.name}")
        self.store = store
        self.embedder = embedder
        self.batch = batch
        self.progress = ReindexProgress()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, on_progress=None) -> ReindexProgress:
        """Re-index every stale user, one after another (blocking: run it in a thread)."""
        self._stop.clear()
        p = self.progress
        users = self.store.stale_scopes()  # users' and pharmacies' libraries
        p.users_total, p.users_done, p.running = len(users), 0, bool(users)
        if users:
            log.info("re-indexing %d users' chunks with %s", len(users), self.embedder.name)
        for user_id in users:
            if self._stop.is_set():
                break
            p.current_user = f"{user_id.kind} {user_id.id}"
            t0 = time.perf_counter()
            try:
                n = self.reindex_user(user_id, on_progress)
            except (
                Exception
            ) as e:  # leave this user stale (retried next start), go on with the others
                log.exception("re-indexing user %s failed", user_id)
                p.errors.append(f"{user_id}: {type(e).__name__}: {e}"[:300])
                continue
            p.users_done += 1
            log.info(
                "re-indexed user %s: %d chunks in %.1f s (%d/%d users)",
                user_id,
                n,
                time.perf_counter() - t0,
                p.users_done,
                p.users_total,
            )
        p.current_user, p.running = None, False
        return p

    def reindex_user(self, user_id: OwnerScope | str, on_progress=None) -> int:
        """Re-embed one scope's chunks (a bare id: that user's library)."""
        store, p = self.store, self.progress
        client = store.client
        stale = client.get_collection(collection_name(user_id), embedding_function=None)
        target = store.target_collection(user_id)  # the staging collection, this embedder's
        ids = stale.get(include=[])["ids"]
        p.chunks_total, p.chunks_done = len(ids), 0
        for start in range(0, len(ids), self.batch):
            if self._stop.is_set():
                return p.chunks_done
            part = ids[start : start + self.batch]
            have = set(target.get(ids=part, include=[])["ids"])
            todo = [i for i in part if i not in have]
            res = stale.get(ids=todo, include=["documents", "metadatas"]) if todo else {"ids": []}
            if res["ids"]:
                vectors = self.embedder.embed(
                    [
                        stored_embedding_text(t, m)
                        for t, m in zip(res["documents"], res["metadatas"], strict=True)
                    ]
                )
                with store.user_lock(user_id):  # only chunks not deleted or rewritten meanwhile
                    alive = set(stale.get(ids=res["ids"], include=[])["ids"])
                    alive -= set(target.get(ids=res["ids"], include=[])["ids"])
                    keep = [k for k, i in enumerate(res["ids"]) if i in alive]
                    if keep:
                        target.upsert(
                            ids=[res["ids"][k] for k in keep],
                            embeddings=vectors[keep],
                            documents=[res["documents"][k] for k in keep],
                            metadatas=[res["metadatas"][k] for k in keep],
                        )
            p.chunks_done = min(len(ids), start + len(part))
            if on_progress is not None:
                on_progress(p)
        with store.user_lock(user_id):
            left = set(stale.get(include=[])["ids"]) - set(target.get(include=[])["ids"])
            if left:  # written to the stale collection by a process with the old embedder: next run
                raise RuntimeError(f"{len(left)} chunks appeared in the stale collection meanwhile")
            store.promote_staging(user_id)
        return len(ids)
