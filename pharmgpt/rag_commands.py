"""`pharmgpt worker` and `pharmgpt reconcile`: the RAG side's command-line entry points."""

from __future__ import annotations

import asyncio
import logging
import signal


async def _with_system(fn):
    from pharmgpt.wiring import open_system

    async with open_system() as rag:
        return await fn(rag)


def run_worker(once: bool = False) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per queue poll

    async def work(rag):
        if once:
            n = 0
            while await rag.worker.run_once():
                n += 1
            print(f"processed {n} job(s)")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"worker {rag.worker.worker_id} waiting for jobs (Ctrl-C to stop)", flush=True)
        await rag.worker.run_forever(stop)
        return 0

    return asyncio.run(_with_system(work))


def run_reconcile() -> int:
    async def work(rag):
        removed = await rag.reconcile()
        total = sum(removed.values())
        print(f"removed orphaned chunks of {total} document(s) across {len(removed)} user(s)")
        queued = await rag.reindex_outdated()
        print(
            f"queued {queued} document(s) indexed by an older version for re-indexing"
            + (" (a running app or `pharmgpt worker` processes them)" if queued else "")
        )
        return 0

    return asyncio.run(_with_system(work))


def run_reindex() -> int:
    """Re-embed, in the foreground, the collections another embedder built (the app does it in the
    background at start); needs only the chunk store, not the database."""
    from pharmgpt.rag.embeddings import shared_embedder
    from pharmgpt.rag.reindex import Reindexer
    from pharmgpt.rag.store import ChunkStore
    from pharmgpt.wiring import load_settings

    s = load_settings()
    embedder = shared_embedder(s.embedder, s.data_dir, s.embedder_threads)
    store = ChunkStore(
        path=s.data_dir / "chroma", host=s.chroma_host, port=s.chroma_port, embedder=embedder.name
    )

    def show(p):
        print(
            f"\ruser {p.users_done + 1}/{p.users_total}: {p.chunks_done}/{p.chunks_total} chunks",
            end="",
            flush=True,
        )

    p = Reindexer(store, embedder).run(on_progress=show)
    print(
        f"\nre-indexed {p.users_done} of {p.users_total} user(s) with {embedder.name}"
        + (f"; {len(p.errors)} failed: " + "; ".join(p.errors) if p.errors else "")
    )
    return 1 if p.errors else 0
