"""Private file modes (issue 12 item 7) and the process supervisor, without the stack."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pharmgpt.localbase.files import loose_modes, open_private, private_dir, secure_tree
from pharmgpt.supervisor import Supervised


@pytest.fixture
def loose_umask():
    """The explicit modes must hold even in a process started with the usual 022 umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_private_dirs_and_files_under_a_loose_umask(tmp_path, loose_umask):
    d = private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == 0o700 and mode(d) == 0o700
    with open_private(d / "log") as f:
        f.write(b"x")
    assert mode(d / "log") == 0o600
    (d / "old").write_text("made by an older version")
    os.chmod(d / "old", 0o644)
    with open_private(d / "old") as f:  # an existing looser file is tightened when opened
        f.write(b"y")
    assert mode(d / "old") == 0o600


def test_secure_tree_repairs_an_old_data_directory(tmp_path, loose_umask):
    (tmp_path / "data" / "chroma" / "seg").mkdir(parents=True)
    (tmp_path / "data" / "chroma" / "chroma.sqlite3").write_bytes(b"db")
    (tmp_path / "data" / "chroma" / "seg" / "data_level0.bin").write_bytes(b"v")
    os.chmod(tmp_path / "data", 0o755)  # o+x is kept: the Postgres service user's traverse bit
    os.chmod(tmp_path / "data" / "chroma", 0o750)
    assert len(loose_modes(tmp_path / "data")) == 5
    assert secure_tree(tmp_path / "data") == 5
    assert loose_modes(tmp_path / "data") == []
    assert mode(tmp_path / "data") == 0o701 and mode(tmp_path / "data" / "chroma") == 0o700
    assert mode(tmp_path / "data" / "chroma" / "seg" / "data_level0.bin") == 0o600


def test_outbox_blobs_lexical_and_chroma_are_private(tmp_path, loose_umask):
    from pharmgpt.rag.lexical import LexicalIndex
    from pharmgpt.rag.store import ChunkStore
    from pharmgpt.services.blobs import BlobStore
    from pharmgpt.services.outbox import Outbox

    data = tmp_path / "data"
    box = Outbox(data / "outbox.sqlite3")
    box.put("u", "c", "m1", {"q": "x"})
    BlobStore(data / "blobs").put("ab" * 32, b"bytes")
    store = ChunkStore(path=data / "chroma")
    user = "00000000-0000-0000-0000-0000000000aa"
    store.upsert(
        user,
        ["d:0"],
        np.ones((1, 384), dtype=np.float32),
        ["digoxin levels"],
        [{"document_id": "d"}],
    )
    LexicalIndex(data / "lexical", store).rebuild(user)
    assert (
        (data / "outbox.sqlite3").exists()
        and (data / "lexical").is_dir()
        and (data / "chroma").is_dir()
    )
    assert any((data / "chroma").glob("*/data_level0.bin"))  # the collection's segment files exist
    assert loose_modes(data) == []


def test_the_lexical_index_sees_another_process_rebuild(tmp_path):
    """The app's cached index is reloaded when a worker (another LexicalIndex) swaps it on disk."""
    from pharmgpt.rag.lexical import LexicalIndex
    from pharmgpt.rag.store import ChunkStore

    store = ChunkStore(path=tmp_path / "chroma")
    user = "00000000-0000-0000-0000-0000000000bb"
    app_side, worker_side = (
        LexicalIndex(tmp_path / "lex", store),
        LexicalIndex(tmp_path / "lex", store),
    )
    store.upsert(
        user,
        ["d1:0"],
        np.ones((1, 384), dtype=np.float32),
        ["digoxin toxicity"],
        [{"document_id": "d1"}],
    )
    worker_side.rebuild(user)
    assert [h[1] for h in app_side.search(user, "digoxin", 5)] == ["d1"]
    store.upsert(
        user,
        ["d2:0"],
        np.ones((1, 384), dtype=np.float32),
        ["lithium levels"],
        [{"document_id": "d2"}],
    )
    worker_side.rebuild(user)
    assert [h[1] for h in app_side.search(user, "lithium", 5)] == ["d2"]


def wait_until(cond, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_supervisor_restarts_a_dead_child_and_stops_it(tmp_path):
    child = Supervised(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(120)"],
        log_path=tmp_path / "logs" / "sleeper.log",
        min_backoff_s=0.1,
        max_backoff_s=0.2,
    ).start()
    try:
        wait_until(lambda: child.pid is not None)
        first = child.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: child.pid not in (None, first))
        assert child.restarts == 1
        second = child.pid
    finally:
        code = child.stop()
    assert code == -signal.SIGTERM and child.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
    assert mode(tmp_path / "logs" / "sleeper.log") == 0o600


def test_a_child_that_keeps_dying_is_restarted_with_growing_waits(tmp_path):
    child = Supervised(
        "crasher",
        [sys.executable, "-c", "raise SystemExit(3)"],
        min_backoff_s=0.2,
        max_backoff_s=0.8,
        stable_after_s=60,
    ).start()
    try:
        wait_until(lambda: child.restarts >= 3)
    finally:
        child.stop()
    restarts = child.restarts
    time.sleep(0.5)
    assert child.restarts == restarts  # stopped means stopped: no restart after stop()


def test_private_dir_keeps_the_traverse_bit_postgres_needs(tmp_path):
    """As root the embedded Postgres runs as its own user and reaches pgdata through o+x parents;
    making an existing data directory private must not lock it out on the next start."""
    d = tmp_path / "data"
    d.mkdir()
    os.chmod(d, 0o755)
    private_dir(d)
    assert mode(d) == 0o701
    os.chmod(d, 0o701)
    private_dir(d)
    assert mode(d) == 0o701


def test_a_worker_started_by_hand_finds_the_chroma_server_of_pharmgpt_run(tmp_path):
    """Two processes must never open one store directory embedded: the RAG system of any process
    over a data directory that `pharmgpt run` serves uses that server (and the embedded store
    once it has stopped)."""
    from pharmgpt.localbase.chroma import ChromaServer
    from pharmgpt.rag.embeddings import TORCH_NAME
    from pharmgpt.rag_system import RagSystem
    from pharmgpt.services.config import Settings

    class _Services:  # RagSystem only reads settings and hands its indexer over here
        settings = Settings(data_dir=tmp_path / "data")
        documents = SimpleNamespace(get_shared_documents=None)
        conversations = preferences = None
        ingestion = SimpleNamespace(settings=settings)

        def connect_indexer(self, indexer) -> None:
            pass

    with ChromaServer(tmp_path / "data" / "chroma") as server:
        rag = RagSystem(
            _Services(), embedder=SimpleNamespace(name=TORCH_NAME), use_configured_provider=False
        )
        assert (rag.store.host, rag.store.port) == (server.host, server.port)
    rag = RagSystem(
        _Services(), embedder=SimpleNamespace(name=TORCH_NAME), use_configured_provider=False
    )
    assert rag.store.host is None
