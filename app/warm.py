"""The warm start of `pharmgpt run` (issue 13): the app's server builds the app context at
start-up, in a thread, so the first question after a restart finds everything loaded.

`lifespan` is given to `st.App` (app/server.py). It starts a thread that builds the
context (the services, the worker, and the warm-up that loads the embedder, Chroma
and the drug lexicon, rag/warmup.py) and returns at once: the server accepts
browsers meanwhile, and the chat page says it is warming up until it is done.
The console says when the search parts are ready.
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager


def warm() -> None:
    t0 = time.perf_counter()
    try:
        from pharmgpt.app.context import app_context

        ctx = app_context()
        state = ctx.run(ctx.rag.warmup.wait(), timeout=600)
    except Exception as e:  # the page will say what is wrong (and `pharmgpt doctor`)
        print(
            f"PharmGPT: warm-up did not finish ({type(e).__name__}: {e}); "
            "the first page loads what it needs",
            flush=True,
        )
        return
    word = (
        "ready"
        if state == "ready"
        else f"started (warm-up {state}: the first question loads the rest)"
    )
    print(f"PharmGPT: {word} in {time.perf_counter() - t0:.1f} s", flush=True)


@asynccontextmanager
async def lifespan(app):
    threading.Thread(target=warm, name="pharmgpt-warm", daemon=True).start()
    yield None
