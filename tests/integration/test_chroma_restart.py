"""A Chroma server killed under `pharmgpt run` comes back by itself (pharmgpt/supervisor.py).

Started the way the launcher starts it (`supervise_chroma`), written to through the
app's ChunkStore built from CHROMA_HOST settings, then SIGKILLed (as the OOM killer
would): it must answer again on the same port over the same directory, with the
chunk written before still there, and the same store object must write again.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import numpy as np
import pytest
from pharmgpt.localbase.chroma import running_server
from pharmgpt.rag.store import ChunkStore
from pharmgpt.services.config import Settings
from pharmgpt.supervisor import supervise_chroma

pytestmark = [pytest.mark.integration, pytest.mark.chroma_server]

BOUND_S = 60.0
USER = str(uuid.uuid4())


def _write(store: ChunkStore, n: int) -> None:
    vec = np.zeros((1, 384), dtype=np.float32)
    vec[0, n] = 1.0
    store.upsert(
        USER,
        [f"doc-1:{n}"],
        vec,
        [f"chunk {n}"],
        [{"document_id": "doc-1", "page": 1}],
    )


def test_a_killed_chroma_server_is_restarted_on_its_port_and_the_store_recovers(tmp_path):
    notices: list[str] = []
    chroma = supervise_chroma(
        tmp_path / "chroma",
        log_path=tmp_path / "logs" / "chroma.log",
        announce=notices.append,
        min_backoff_s=1.0,
        max_backoff_s=1.0,
    )
    try:
        settings = Settings.load(env={**chroma.env(), "PHARMGPT_DATA_DIR": str(tmp_path)})
        store = ChunkStore(host=settings.chroma_host, port=settings.chroma_port)
        _write(store, 0)
        first, port = chroma.pid, chroma.port
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + BOUND_S
        while chroma.healthy():
            assert time.monotonic() < deadline, "the killed server still answers"
            time.sleep(0.05)

        # while it is down (the restart waits 1 s first): the store waits for it, boundedly
        _write(store, 1)
        assert chroma.pid not in (None, first) and chroma.healthy()
        assert chroma.port == port
        # a `pharmgpt worker` started by hand finds the new process (its pid is announced again)
        assert running_server(tmp_path / "chroma") == (chroma.host, port)
        assert notices and notices[0].startswith("chroma server exited (code -9); restarting in")

        # the same store object: the chunk from before the kill is there, and a new write lands
        texts = sorted(h.text for h in store.get_document_chunks(USER, "doc-1"))
        assert texts == ["chunk 0", "chunk 1"]
        _write(store, 2)
        assert store.count(USER) == 3
    finally:
        chroma.stop()
    assert chroma.pid is None and not chroma.healthy()
    assert running_server(tmp_path / "chroma") is None
