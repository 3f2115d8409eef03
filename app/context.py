"""One set of services and one RAG system per Streamlit server process.

Built on the runtime loop (DESIGN D6) the first time anything needs them, with
the outbox flusher and the warm-up (the embedder, Chroma and BM25 load in the
background) started there, all by the composition root (pharmgpt/wiring.py). The ingestion
worker runs in its own process under `pharmgpt run` (pharmgpt/launcher.py), which sets
PHARMGPT_APP_RUNS_WORKER=false;
a bare `streamlit run` and the AppTests run it on this loop instead. A plain
process-wide singleton rather than `st.cache_resource`, so `pharmgpt run` can
build it at server start, before any browser connects (`app/warm.py`).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from pharmgpt.localbase.files import private_umask
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.container import Services
from pharmgpt.services.runtime import Runtime, get_runtime
from pharmgpt.wiring import build_app_process


@dataclass
class AppContext:
    services: Services
    rag: RagSystem
    runtime: Runtime

    def run(self, coro, timeout: float | None = 60):
        return self.runtime.run(coro, timeout)

    def stream(self, agen, timeout: float | None = 120):
        return self.runtime.stream(agen, timeout)

    # what pages need beyond service calls, named here so they never reach into the parts
    def in_background(self, coro) -> None:
        """Start `coro` on the runtime loop and return at once (nothing waits for it)."""
        asyncio.run_coroutine_threadsafe(coro, self.runtime.loop)

    def wake_worker(self) -> None:
        """Tell an in-process ingestion worker a job is waiting. Under `pharmgpt run` the worker
        is another process that polls the queue, so there is nothing to signal then."""
        if self.services.settings.app_runs_worker:
            self.runtime.loop.call_soon_threadsafe(self.rag.worker.wake)

    def warm_user(self, user_id: str) -> None:
        """Open the user's collection and BM25 index in the background."""
        self.in_background(self.rag.warmup.user(user_id))

    def refresh_documents(self, user_id: str) -> None:
        """Read the user's documents afresh next time: a worker in another process moves them on
        without this process's cache knowing."""
        self.services.cache.invalidate("docs", user_id)

    def record_metric(self, op: str, ms: float, ok: bool = True) -> None:
        """A latency measured by the page (e.g. send to first answer token), beside the
        services'."""
        self.services.metrics.record(op, ms, ok)

    def metrics_snapshot(self):
        return self.services.metrics.snapshot()


_ctx: AppContext | None = None
_lock = threading.Lock()


def _build() -> AppContext:
    # this process's entry point: what it writes under the data directory is private
    private_umask()
    rt = get_runtime()

    async def build() -> AppContext:
        services, rag = await build_app_process()
        return AppContext(services, rag, rt)

    return rt.run(build(), timeout=180)


def app_context() -> AppContext:
    """The process's context, built on first use (a failed build is tried again next time)."""
    global _ctx
    if _ctx is None:
        with _lock:
            if _ctx is None:
                _ctx = _build()
    return _ctx


def built() -> bool:
    return _ctx is not None


def _clear() -> None:
    """Forget the context (tests: the next use builds a new one; stopping the old one is the
    caller's)."""
    global _ctx
    with _lock:
        _ctx = None


app_context.clear = _clear  # the same call as st.cache_resource's, used by the tests and benchmarks
