"""Loading the slow parts before the first question needs them (issue 13: a warm start).

The embedding model (and its first inference), the Chroma client, the stemmer
and the drug lexicon take tens of seconds on a cold process; a user's BM25
index and collection a little more. `start()` loads the shared parts in a
thread at start-up, `user()` a signed-in user's own ones, and `state` lets the
app say "warming up" meanwhile. A failure is logged and left to the first
question, which loads the same things itself (and reports its own error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .index import RagIndex
from .owner_scope import OwnerScope

log = logging.getLogger(__name__)

COLD, WARMING, READY, FAILED = "cold", "warming", "ready", "failed"


class Warmup:
    def __init__(self, index: RagIndex, shared_documents: Callable[[str], Awaitable[list]]):
        """`shared_documents`: a user's pharmacy-library document rows as RLS shows them
        (the documents service's `get_shared_documents`)."""
        self.index = index
        self.shared_documents = shared_documents
        self.state = COLD
        self.seconds: float | None = None  # how long the shared parts took
        self._task: asyncio.Task | None = None
        self._users: set = set()  # user ids and pharmacy scopes already loaded

    @property
    def warming(self) -> bool:
        return self.state in (COLD, WARMING) and self._task is not None

    def start(self) -> asyncio.Task:
        """Begin loading on the running loop (once); the returned task ends when it is done."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def wait(self) -> str:
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.state

    async def _run(self) -> None:
        self.state = WARMING
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self._shared_parts)
        except Exception:
            log.exception("warm-up failed; the first question will load the search parts itself")
            self.state = FAILED
            return
        self.seconds = time.perf_counter() - t0
        self.state = READY
        log.info("search parts loaded in %.1f s", self.seconds)

    def _shared_parts(self) -> None:
        index = self.index
        index.embedder.embed_query("warm-up: recommended starting dose")  # loads and runs it once
        index.store.client  # noqa: B018 - opens the Chroma store
        index.lexical.stemmer  # noqa: B018
        index.lexicon  # noqa: B018 - the drug names used to scope questions

    async def user(self, user_id: str) -> None:
        """Open one user's collection and BM25 index (after sign-in), and those of their
        pharmacies' libraries, once per process."""
        if user_id in self._users:
            return
        self._users.add(user_id)

        scopes: list = [user_id]
        try:  # and the libraries of their pharmacies (as RLS shows them now)
            shared = await self.shared_documents(user_id)
            scopes += sorted({OwnerScope.of_document(d) for d in shared} - self._users)
        except Exception:
            log.warning("could not list a user's pharmacy libraries to preload", exc_info=True)

        def _load() -> None:
            for scope in scopes:
                self._users.add(scope)
                index = self.index
                if not index.store.count(scope):
                    continue  # nothing indexed yet: nothing to open (and no empty BM25 index)
                index.store.query(scope, index.embedder.embed_query("dose"), 1)  # the vector index
                index.lexical.search(scope, "dose", 1)

        try:
            await asyncio.to_thread(_load)
        except Exception:
            self._users.discard(user_id)
            log.warning("could not preload the search index of a user", exc_info=True)
