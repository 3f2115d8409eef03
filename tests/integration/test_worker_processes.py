"""Ingestion in real worker processes on one queue, over a real Chroma server (issues 12 and 15).

- `pharmgpt run`'s supervisor restarts a worker killed mid-document, and the document
  still ends ready (its job is reclaimed through the heartbeat);
- two `pharmgpt worker` processes share 20 documents; one is SIGKILLed mid-document,
  and every document ends `ready` exactly once with no duplicate chunks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from pharmgpt.rag_system import RagSystem
from pharmgpt.supervisor import stop_all, supervise_workers, worker_command

from tests.conftest import service_settings, worker_env
from tests.fixtures import shared_data

LABELS = shared_data("fda-labels")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chroma_server]
# a killed worker's job is reclaimed after 8 s instead of a minute
FAST_RECLAIM = {"ingest_heartbeat_s": 2, "ingest_stale_after_s": 8}
DEADLINE_S = 240


@pytest_asyncio.fixture(scope="module")
async def system(stack, services, chroma_server):
    """Services and a RAG system on the Chroma server, sharing the session's data directory (its
    blobs), so the worker processes read what these services stored."""
    from pharmgpt.services.container import Services

    svc = await Services.create(
        service_settings(
            stack,
            services.settings.data_dir,
            chroma_host=chroma_server.host,
            chroma_port=chroma_server.port,
            **FAST_RECLAIM,
        )
    )
    yield RagSystem(svc, use_configured_provider=False)
    await svc.close()


@pytest.fixture(scope="module")
def logs_dir():
    """The worker processes' logs, kept in /tmp until the module ends (read on failure)."""
    path = Path(tempfile.mkdtemp(prefix="pgt-workers-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def env_for(stack, system, chroma_server) -> dict[str, str]:
    return worker_env(stack, system.services.settings.data_dir, chroma_server, **FAST_RECLAIM)


def note(i: int) -> bytes:
    """A small reference note (about 8 passages), different for each i."""
    drugs = [
        "amiodarone",
        "digoxin",
        "lithium",
        "warfarin",
        "metformin",
        "atorvastatin",
        "levothyroxine",
    ]
    lines = [f"# Monitoring note {i}"]
    for j in range(60):
        d = drugs[(i + j) % len(drugs)]
        lines.append(
            f"Note {i}.{j}: {d} needs review at dose step {j * 5 + i} mg; check levels after "
            f"{(j % 7) + 1} days and record the result in the chart of patient {i * 100 + j}."
        )
    return "\n".join(lines).encode()


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """One `pharmgpt worker` process (as `pharmgpt run` starts it), logging to `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            worker_command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def wait_for(predicate, limit_s: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = await predicate()
        if got:
            return got
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {limit_s:.0f}s waiting for {what}")


async def running_job_of(system, pid: int, doc_ids: set[str]) -> dict | None:
    r = (
        await system.services.backend.service.table("ingest_jobs")
        .select("id,document_id,locked_by")
        .eq("status", "running")
        .like("locked_by", f"%:{pid}:%")
        .execute()
    )
    return next((j for j in r.data if j["document_id"] in doc_ids), None)


async def all_settled(system, user_docs: dict[str, list[str]]) -> bool:
    """Every document ready or failed, its job finished (the worker writes the document first)."""
    for user_id, ids in user_docs.items():
        for d in ids:
            if (await system.services.documents.get_document(user_id, d)).status not in (
                "ready",
                "failed",
            ):
                return False
    ids = [d for ids in user_docs.values() for d in ids]
    r = (
        await system.services.backend.service.table("ingest_jobs")
        .select("status")
        .in_("document_id", ids)
        .in_("status", ["queued", "running"])
        .execute()
    )
    return not r.data


async def assert_ready_once_without_duplicates(system, user_docs: dict[str, list[str]]) -> None:
    svc = system.services.backend.service
    for user_id, ids in user_docs.items():
        total = 0
        for d in ids:
            doc = await system.services.documents.get_document(user_id, d)
            assert doc.status == "ready", (doc.filename, doc.status, doc.processing_error)
            jobs = (
                await svc.table("ingest_jobs").select("status").eq("document_id", d).execute()
            ).data
            assert [j["status"] for j in jobs] == ["done"], jobs  # one job, done once
            chunk_ids = [h.chunk_id for h in system.store.get_document_chunks(user_id, d)]
            assert sorted(chunk_ids) == sorted(f"{d}:{n}" for n in range(doc.chunk_count)), (
                doc.filename
            )
            total += doc.chunk_count
        assert system.store.count(user_id) == total  # nothing left over from the killed attempt
        assert system.lexical.indexed_ids(user_id) == set(system.store.get(user_id)["ids"])


@pytest.mark.skipif(not LABELS.is_dir(), reason=f"the FDA labels are not at {LABELS}")
async def test_the_supervisor_restarts_a_killed_worker_and_the_document_still_ends_ready(
    stack, system, chroma_server, logs_dir
):
    services = system.services
    user = await services.users.create_user(f"sup-{uuid.uuid4().hex[:8]}", "long enough pw")
    [worker] = supervise_workers(
        1, env_for(stack, system, chroma_server), logs_dir, max_backoff_s=1
    )
    try:
        doc = await services.documents.register_upload(
            user.id, "cough.xml", (LABELS / "cough.xml").read_bytes()
        )
        first = worker.pid
        job = await wait_for(
            lambda: running_job_of(system, first, {doc.id}), 120, "the worker to take the job"
        )
        os.kill(first, signal.SIGKILL)  # mid-document: claimed and processing
        await wait_for(lambda: asyncio.sleep(0, worker.pid not in (None, first)), 30, "the restart")
        assert worker.restarts == 1
        await wait_for(lambda: all_settled(system, {user.id: [doc.id]}), DEADLINE_S, "the document")
        await assert_ready_once_without_duplicates(system, {user.id: [doc.id]})
        row = (
            await services.backend.service.table("ingest_jobs")
            .select("attempts,locked_by")
            .eq("id", job["id"])
            .single()
            .execute()
        ).data
        # taken again by the restarted worker (on a loaded machine its heartbeat may lapse again)
        assert row["attempts"] >= 2 and f":{worker.pid}:" in row["locked_by"]
    finally:
        last = worker.pid
        stop_all([worker])
    assert worker.pid is None and last is not None
    with pytest.raises(ProcessLookupError):
        os.kill(last, 0)  # stopped (and reaped), not left running


async def test_two_workers_share_20_documents_and_one_is_killed_mid_document(
    stack, system, chroma_server, logs_dir
):
    services = system.services
    tag = uuid.uuid4().hex[:6]
    users = [
        await services.users.create_user(f"scale{n}-{tag}", "long enough pw") for n in range(4)
    ]
    env = env_for(stack, system, chroma_server)
    procs = []
    try:
        procs = [start_worker(env, logs_dir / f"pair-{n}.log") for n in range(2)]
        user_docs: dict[str, list[str]] = {u.id: [] for u in users}
        for i in range(20):
            u = users[i % len(users)]
            d = await services.documents.register_upload(u.id, f"note-{i:02d}.md", note(i))
            user_docs[u.id].append(d.id)
        mine = {d for ids in user_docs.values() for d in ids}
        victim, survivor = procs
        job = await wait_for(
            lambda: running_job_of(system, victim.pid, mine), 120, "worker 1 to take a job"
        )
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        await wait_for(lambda: all_settled(system, user_docs), DEADLINE_S, "all 20 documents")
        assert survivor.poll() is None
        await assert_ready_once_without_duplicates(system, user_docs)
        row = (
            await services.backend.service.table("ingest_jobs")
            .select("attempts,locked_by")
            .eq("id", job["id"])
            .single()
            .execute()
        ).data
        assert (
            row["attempts"] >= 2 and f":{survivor.pid}:" in row["locked_by"]
        )  # reclaimed by the other one
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
