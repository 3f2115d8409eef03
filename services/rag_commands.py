"""`pharmgpt worker` and `pharmgpt reconcile`: the RAG side's command-line entry points."""

from __future__ import annotations

import asyncio
import logging
import signal


async def _with_system(fn):
    from rag.system import RagSystem
    from services.config import Settings, describe_data
    from services.container import Services
    settings = Settings.load()
    print(describe_data(settings), flush=True)
    services = await Services.create(settings)
    try:
        return await fn(RagSystem(services))
    finally:
        await services.close()


def run_worker(once: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        print(f"queued {queued} document(s) indexed by an older version for re-indexing"
              + (" (a running app or `pharmgpt worker` processes them)" if queued else ""))
        return 0
    return asyncio.run(_with_system(work))
