"""The legacy migration end to end on the real stack (issue #6): a legacy tree
built the way the old app wrote it -> run -> verify -> old passwords sign in ->
history through the services -> retrieval over the migrated chunks; a second
run changes nothing; a run killed with SIGKILL and resumed ends identical to
a clean run; rollback restores the database and the store; bad data is
reported with file and reason while everything else migrates.

Each test builds its own tree with its own username prefix, so its ids never
meet another test's in the shared database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import pytest_asyncio
from pharmgpt.migration import ids
from pharmgpt.migration.backup import backup, check_backup
from pharmgpt.migration.legacy import LegacySource, salvage, salvage_object
from pharmgpt.migration.migrator import Migrator, store_for
from pharmgpt.migration.planner import detect, plan
from pharmgpt.migration.rollback import RollbackError, rollback
from pharmgpt.migration.verify import verify
from pharmgpt.rag_system import RagSystem
from pharmgpt.services.errors import AuthError

from tests.fixtures.legacy import build_case_collision_tree, build_legacy_tree

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "users": "id, username, password_hash, password_scheme, password_salt, legacy_user_id, "
    "created_at, last_login, is_active",
    "conversations": "id, user_id, title, model, created_at, updated_at, message_count, "
    "is_archived",
    "messages": "id, conversation_id, user_id, role, content, created_at",
    "documents": "id, user_id, conversation_id, filename, file_type, chunk_count, status, "
    "legacy_hash, added_at, metadata",
    "uploads": "id, user_id, document_id, conversation_id, filename, file_type, file_size, "
    "outcome, uploaded_at",
}


# ---------------------------------------------------------------- helpers
def db_snapshot(dsn: str, user_ids: list[str] | None = None) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row) per table: of these users, or of the whole table."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table, cols in TABLES.items():
            owner = "id" if table == "users" else "user_id"
            where = f"WHERE {owner} = ANY(%s::uuid[])" if user_ids is not None else ""
            q = (
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '') "
                f"FROM (SELECT {cols} FROM public.{table} {where}) t"
            )
            out[table] = tuple(
                conn.execute(q, (user_ids,) if user_ids is not None else ()).fetchone()
            )
    return out


def store_snapshot(store, user_ids: list[str]) -> dict[str, list]:
    """Every chunk of these users: id, text, metadata (minus nothing) and the vector, rounded."""
    out = {}
    for uid in user_ids:
        col = store._collection(uid, create=False)
        if col is None:
            out[uid] = []
            continue
        res = col.get(include=["documents", "metadatas", "embeddings"])
        rows = []
        for i, cid in enumerate(res["ids"]):
            vec = np.round(np.asarray(res["embeddings"][i], dtype=np.float64), 5).tolist()
            rows.append(
                (cid, res["documents"][i], json.dumps(res["metadatas"][i], sort_keys=True), vec)
            )
        out[uid] = sorted(rows)
    return out


def lexical_snapshot(lexical, user_ids: list[str]) -> dict[str, list | None]:
    """The chunk ids each user's BM25 index on disk holds (None: no index), read without the
    lazy rebuild a search would do."""
    out = {}
    for uid in user_ids:
        have = lexical.indexed_ids(uid)
        out[uid] = None if have is None else sorted(have)
    return out


# Runs `pharmgpt migrate ...` with the BM25 rebuild replaced by a pause that writes a marker: the
# process can then be killed exactly between "the user's documents are done" and "the index is
# rebuilt" (the kill itself is a real SIGKILL from the test).
PAUSE_BEFORE_INDEX = """
import os, sys, time
from pathlib import Path
import pharmgpt.rag.lexical
def paused(self, user_id):
    Path(os.environ["PAUSE_MARKER"]).write_text(str(user_id))
    time.sleep(600)
pharmgpt.rag.lexical.LexicalIndex.rebuild = paused
from pharmgpt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def all_chunk_counts(store) -> dict[str, int]:
    return {uid: store.count(uid) for uid in store.users()}


def cli_env(stack, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        **stack.as_env(),
        "PHARMGPT_DATA_DIR": str(data_dir),
        "PHARMGPT_SECRETS_FILE": str(data_dir / "no-secrets.toml"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("PHARMGPT_BCRYPT_ROUNDS", None)
    return env


async def cli(stack, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`pharmgpt migrate ...` in a subprocess (the real entry point, its own process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pharmgpt",
        "migrate",
        *args,
        cwd=REPO,
        env=cli_env(stack, data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def utc(naive_iso: str) -> datetime:
    """A legacy naive local time as the migration reads it (this machine's zone)."""
    from pharmgpt.migration.legacy import load_timezone

    tz, _ = load_timezone(None)
    return datetime.fromisoformat(naive_iso).replace(tzinfo=tz).astimezone(UTC)


# ---------------------------------------------------------------- fixtures
@pytest_asyncio.fixture(scope="module")
async def rag(services):
    return RagSystem(services, use_configured_provider=False)


@pytest_asyncio.fixture(scope="module")
async def migrated(services, rag, stack, tmp_path_factory):
    """The default tree (bad data included), planned, then migrated once with a small batch size."""
    tree = build_legacy_tree(tmp_path_factory.mktemp("legacy") / "user_data")
    fingerprint = LegacySource(tree.root).fingerprint()
    before_plan = await plan(LegacySource(tree.root), services)
    m = Migrator(
        services,
        tree.root,
        batch_size=3,
        store=rag.store,
        lexical=rag.lexical,
        embedder=rag.embedder,
    )
    report = await m.run()
    return {"tree": tree, "report": report, "plan": before_plan, "fingerprint": fingerprint}


# ---------------------------------------------------------------- the happy path
async def test_run_migrates_everything_that_is_valid_and_verify_passes(services, rag, migrated):
    tree, report = migrated["tree"], migrated["report"]
    c = report["counts"]
    assert report["state"] == "completed"
    for kind in ("users", "conversations", "messages", "documents", "chunks", "uploads"):
        assert c.get(f"{kind}_written", 0) == tree.expected[kind], kind
    assert c["chunks_reembedded"] == sum(d["chunks"] for d in tree.user("zoë").documents.values())
    assert migrated["plan"]["plan"]["users"]["create"] == tree.expected["users"]
    assert migrated["plan"]["plan"]["messages"]["create"] == tree.expected["messages"]
    result = await verify(services, tree.root, run_id=report["run_id"], store=rag.store)
    assert result["ok"], result["mismatches"]
    assert result["counts"]["messages"] == tree.expected["messages"]
    assert result["counts"]["chunks"] == tree.expected["chunks"]
    # the source is read, never written (legacy Chroma stores are opened on a copy)
    assert LegacySource(tree.root).fingerprint() == migrated["fingerprint"]
    audit = await services.audit.list(action="migration.run", limit=20)
    assert any(e.target_id == report["run_id"] and e.details["state"] == "completed" for e in audit)


async def test_verify_says_legacy_documents_stay_private(services, rag, migrated, superuser_dsn):
    """Every migrated document is its owner's (issue 15); one moved to a pharmacy is a mismatch."""
    tree, report = migrated["tree"], migrated["report"]
    result = await verify(services, tree.root, run_id=report["run_id"], store=rag.store)
    assert (
        result["counts"]["documents_private"]
        == result["counts"]["documents"]
        == tree.expected["documents"]
    )
    uids = [u.user_id for u in tree.users.values()]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        doc_id, owner, conv, updated = conn.execute(
            "SELECT id, user_id, conversation_id, updated_at FROM documents "
            "WHERE user_id = ANY(%s::uuid[]) ORDER BY id LIMIT 1",
            (uids,),
        ).fetchone()
        pharmacy = conn.execute(
            "INSERT INTO pharmacies (name, created_by) VALUES ('Shared', %s) RETURNING id", (owner,)
        ).fetchone()[0]
        conn.execute(
            "UPDATE documents SET conversation_id = NULL, pharmacy_id = %s WHERE id = %s",
            (pharmacy, doc_id),
        )
        try:
            moved = await verify(services, tree.root, run_id=report["run_id"], store=rag.store)
        finally:
            conn.execute(
                "UPDATE documents SET conversation_id = %s, pharmacy_id = NULL, updated_at = %s "
                "WHERE id = %s",
                (conv, updated, doc_id),
            )
            conn.execute("DELETE FROM pharmacies WHERE id = %s", (pharmacy,))
    assert not moved["ok"]
    bad = [m for m in moved["mismatches"] if m["what"] == "legacy document is not private"]
    assert len(bad) == 1 and bad[0]["found"] == {
        "user_id": str(owner),
        "pharmacy_id": str(pharmacy),
    }
    assert moved["counts"]["documents_private"] == tree.expected["documents"] - 1
    assert (await verify(services, tree.root, run_id=report["run_id"], store=rag.store))["ok"]


async def test_migrated_users_sign_in_with_their_old_password(services, migrated, superuser_dsn):
    tree = migrated["tree"]
    for short in ("alice", "zoë"):
        info = tree.user(short)
        with pytest.raises(AuthError):
            await services.users.authenticate_user(info.username, info.password + "x")
        user = await services.users.authenticate_user(info.username, info.password)
        assert user.id == ids.user_id(ids.legacy_user_id(info.username)) == info.user_id
        with psycopg.connect(superuser_dsn) as conn:
            scheme, salt = conn.execute(
                "SELECT password_scheme, password_salt FROM users WHERE id = %s", (user.id,)
            ).fetchone()
        assert (scheme, salt) == ("bcrypt", None)  # upgraded at the first sign-in
        again = await services.users.authenticate_user(info.username, info.password)
        assert again.id == user.id


async def test_history_is_visible_through_the_services(services, migrated):
    tree = migrated["tree"]
    alice = tree.user("alice")
    convs = await services.conversations.get_user_conversations(alice.user_id)
    assert {c.id for c in convs} == set(alice.conversations)
    # newest activity first: updated_at is the last legacy message time
    expected_order = sorted(
        alice.conversations, key=lambda k: alice.conversations[k]["last"], reverse=True
    )
    assert [c.id for c in convs] == expected_order
    for conv in convs:
        legacy = alice.conversations[conv.id]
        assert conv.title == legacy["title"]
        assert conv.message_count == legacy["messages"]
        assert conv.created_at == utc(legacy["created_at"].isoformat())
        assert conv.updated_at == utc(legacy["last"])
        assert conv.model == "meta-llama/llama-4-maverick-17b-128e-instruct"
        msgs = await services.conversations.get_messages(alice.user_id, conv.id, limit=200)
        assert len(msgs) == legacy["messages"]
        assert [m.role for m in msgs] == ["user", "assistant"] * (legacy["messages"] // 2)
        assert [m.created_at for m in msgs] == sorted(m.created_at for m in msgs)
        assert msgs[-1].created_at == conv.updated_at
    zoe = tree.user("zoë")
    (zconv,) = await services.conversations.get_user_conversations(zoe.user_id)
    assert zconv.title == "Atorvastatin — 10 mg vs 20 mg ✓"
    first = (await services.conversations.get_messages(zoe.user_id, zconv.id))[0]
    assert first.content == "¿Dosis de atorvastatina en insuficiencia hepática? 肝功能 — µg/mL"
    # dave's file was Windows-1252: decoded, and the message with a bad role left out
    dave = tree.user("dave")
    (dconv,) = await services.conversations.get_user_conversations(dave.user_id)
    assert dconv.title == "Café notes" and dconv.message_count == 4
    uploads = await services.documents.get_upload_history(alice.user_id)
    assert sorted(u.filename for u in uploads) == ["Warfarin guide.pdf", "metformin-notes.txt"]
    assert all(u.outcome == "migrated" and u.document_id for u in uploads)


async def test_retrieval_finds_the_migrated_chunks(services, rag, migrated):
    tree = migrated["tree"]
    alice = tree.user("alice")
    (conv_id,) = {d["conversation"] for d in alice.documents.values()}
    docs = await services.documents.get_conversation_documents(alice.user_id, conv_id)
    assert {d.filename for d in docs} == {"Warfarin guide.pdf", "metformin-notes.txt"}
    assert all(d.status == "ready" and d.chunk_count == 2 and d.sha256 is None for d in docs)
    doc_ids = [d.id for d in docs]
    passages = await rag.retriever.retrieve(alice.user_id, "warfarin INR amiodarone", doc_ids, k=4)
    assert passages and passages[0].filename == "Warfarin guide.pdf"
    assert "INR" in passages[0].text and passages[0].document_id in doc_ids
    assert passages[0].bm25  # the lexical index was rebuilt (the legacy vectors here are random)
    # Zoë's store had 128-d vectors: re-embedded, so dense search works on them
    zoe = tree.user("zoë")
    (zconv,) = await services.conversations.get_user_conversations(zoe.user_id)
    zdocs = await services.documents.get_conversation_documents(zoe.user_id, zconv.id)
    hits = await rag.retriever.retrieve(
        zoe.user_id, "atorvastatin myopathy CYP3A4", [d.id for d in zdocs], k=2
    )
    assert hits and hits[0].similarity is not None and hits[0].similarity > 0.35
    # and no other user's chunk is reachable
    assert not await rag.retriever.retrieve(zoe.user_id, "warfarin INR", doc_ids, k=4)


async def test_bad_data_is_reported_with_file_and_reason(migrated):
    tree, report = migrated["tree"], migrated["report"]
    problems = report["problems"]

    def has(file_part: str, reason_part: str) -> bool:
        return any(file_part in p["file"] and reason_part in p["reason"] for p in problems)

    carol, dave = tree.user("carol"), tree.user("dave")
    lost = tree.notes["lost_conversation"]
    carol_file = f"conversations_{carol.legacy_id}/conversations.json"
    assert has(carol_file, "truncated JSON")
    # the cut file says what it still gave and what it lost, by id
    (cut,) = [p for p in problems if p["file"] == carol_file and "truncated JSON" in p["reason"]]
    assert (cut["recovered"], cut["lost"], cut["lost_keys"]) == (1, 1, [lost])
    assert "1 complete conversation recovered, 1 lost" in cut["reason"] and lost in cut["reason"]
    assert {
        "file": carol_file,
        "recovered": 1,
        "lost": 1,
        "lost_keys": [lost],
        "lost_unnamed": 0,
    } in report["damaged_files"]
    assert has(f"conversations_{carol.legacy_id}/conversations.json.backup_", "backup copy")
    # the RAG folder of the lost conversation says so; the deleted one's says it may be one
    assert has(f"rag_{carol.legacy_id}/conversation_{lost}", "was lost from the damaged")
    assert has(f"rag_{carol.legacy_id}/conversation_", "conversation that does not exist")
    assert not any(
        "a conversation that does not exist" in p["reason"] and lost in p["file"] for p in problems
    )
    assert has(f"rag_{carol.legacy_id}/conversation_", "ghost.pdf")
    assert has(f"conversations_{dave.legacy_id}/conversations.json", "not UTF-8")
    assert has(f"conversations_{dave.legacy_id}/conversations.json", "role 'bot'")
    assert has(f"conversations_{dave.legacy_id}/conversations.json", "messages is a str")
    assert has("users.json", "mallory") and has("uploads.json", "unknown user")
    assert has("uploads.json", "file_size")
    assert any(
        p["file"].startswith("conversations_") and "unknown user" in p["reason"] for p in problems
    )
    assert has("sessions.json", "not migrated")
    assert has("chroma_db", "re-embedded")
    assert report["counts"]["sessions_not_migrated"] == 3
    # the salvage kept carol's complete conversation
    assert len(carol.conversations) == 1 and report["counts"]["conversations_written"] == 6


async def test_second_run_changes_nothing(services, rag, migrated, superuser_dsn):
    tree = migrated["tree"]
    uids = [u.user_id for u in tree.users.values()]
    db_before, store_before = db_snapshot(superuser_dsn, uids), store_snapshot(rag.store, uids)
    again = await Migrator(
        services, tree.root, batch_size=2, store=rag.store, lexical=rag.lexical
    ).run()
    assert again["state"] == "completed"
    c = again["counts"]
    assert not any(v for k, v in c.items() if k.endswith("_written")), c
    assert c["users_existing"] == tree.expected["users"]
    assert c["conversations_existing"] == tree.expected["conversations"]
    assert c["documents_existing"] == tree.expected["documents"]
    assert db_snapshot(superuser_dsn, uids) == db_before
    assert store_snapshot(rag.store, uids) == store_before
    # rolling back a run that wrote nothing removes nothing
    r = await rollback(services, again["run_id"], store=rag.store, lexical=rag.lexical)
    assert not any(r["removed"].values())
    assert db_snapshot(superuser_dsn, uids) == db_before
    assert (await verify(services, tree.root, store=rag.store))["ok"]


# ---------------------------------------------------------------- kill -9, resume
@pytest.mark.parametrize(
    "kill_after",
    [("message_batch", 3), ("document", 1), ("upload", 1), ("index", 0)],
    ids=lambda k: "documents-done-before-index" if k[0] == "index" else f"after-{k[1]}-{k[0]}",
)
async def test_killed_run_resumes_to_the_same_end_state_as_a_clean_run(
    services, stack, superuser_dsn, tmp_path, kill_after
):
    tree = build_legacy_tree(
        tmp_path / "user_data", wrong_dimension_store=False, large_conversation=400
    )
    uids = [u.user_id for u in tree.users.values()]
    # 1. a clean run (in process, its own store), its end state, then undo it
    clean_store, clean_lex = store_for(
        dataclasses.replace(services.settings, data_dir=tmp_path / "clean")
    )
    clean = await Migrator(
        services, tree.root, batch_size=5, store=clean_store, lexical=clean_lex
    ).run()
    assert clean["state"] == "completed"
    want_db, want_store = db_snapshot(superuser_dsn, uids), store_snapshot(clean_store, uids)
    want_lexical = lexical_snapshot(clean_lex, uids)
    assert want_db["messages"][0] == tree.expected["messages"]
    assert sum(1 for v in want_lexical.values() if v) == 3  # alice, zoë and carol have chunks
    await rollback(services, clean["run_id"], store=clean_store, lexical=clean_lex)
    assert all(n == 0 for n, _ in db_snapshot(superuser_dsn, uids).values())
    assert all(not v for v in store_snapshot(clean_store, uids).values())

    # 2. the CLI in a subprocess, killed with SIGKILL once the first items of a kind are recorded
    kind, threshold = kill_after
    data = tmp_path / "cli"
    data.mkdir()
    marker = tmp_path / "paused-before-index"
    entry = ["-m", "pharmgpt"]
    if kind == "index":
        (tmp_path / "pause_before_index.py").write_text(PAUSE_BEFORE_INDEX)
        entry = [str(tmp_path / "pause_before_index.py")]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *entry,
        "migrate",
        "run",
        "--source",
        str(tree.root),
        "--batch-size",
        "5",
        "--no-progress",
        "--json",
        cwd=REPO,
        env={**cli_env(stack, data), "PAUSE_MARKER": str(marker)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    run_id, seen = None, 0
    deadline = time.monotonic() + 60
    try:
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            while time.monotonic() < deadline and proc.returncode is None:
                row = conn.execute(
                    "SELECT r.id, (SELECT count(*) FROM migration_items i WHERE i.run_id = r.id "
                    "AND i.kind = %s) FROM migration_runs r WHERE r.source = %s "
                    "ORDER BY started_at DESC LIMIT 1",
                    (kind, str(tree.root)),
                ).fetchone()
                if row and row[0] != uuid.UUID(clean["run_id"]) and row[1] >= threshold:
                    if kind != "index" or marker.exists():
                        run_id, seen = str(row[0]), row[1]
                        break
                await asyncio.sleep(0.01)
        assert run_id, "the run finished (or failed) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == -signal.SIGKILL
    with psycopg.connect(superuser_dsn) as conn:
        (state,) = conn.execute(
            "SELECT state FROM migration_runs WHERE id = %s", (run_id,)
        ).fetchone()
        done, total = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FROM migration_items "
            "WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    assert state == "running" and seen >= threshold
    partial = db_snapshot(superuser_dsn, uids)
    assert partial["messages"][0] < tree.expected["messages"]  # it really stopped half-way
    src = str(tree.root)
    cli_store, cli_lex = store_for(dataclasses.replace(services.settings, data_dir=data))
    if kind == "index":
        # killed with the user's documents done and their index not built
        paused_uid = marker.read_text()
        with psycopg.connect(superuser_dsn) as conn:
            (docs_done,) = conn.execute(
                "SELECT count(*) FROM migration_items WHERE run_id = %s AND kind = 'document' "
                "AND state = 'done' AND target_ids->>'user_id' = %s",
                (run_id, paused_uid),
            ).fetchone()
        assert docs_done >= 1 and want_lexical[paused_uid]
        assert cli_lex.indexed_ids(paused_uid) is None
        # `status` shows it running while its heartbeat is fresh, stale once it is old
        s = await cli(stack, data, "status")
        assert "stale" not in next(x for x in s.stdout.splitlines() if x.startswith(run_id))
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE migration_runs SET heartbeat_at = now() - interval '5 minutes' "
                "WHERE id = %s",
                (run_id,),
            )
        s = await cli(stack, data, "status")
        assert "stale (no heartbeat since" in next(
            x for x in s.stdout.splitlines() if x.startswith(run_id)
        )
        assert f"resume it with: pharmgpt migrate run --source {src} --resume {run_id}" in s.stdout
        resume = ["run", "--source", src, "--resume", run_id, "--no-progress", "--json"]
    else:
        with pytest.raises(RollbackError, match="is running"):  # it looks alive for a while
            await rollback(services, run_id, store=store_for(services.settings)[0])
        refused = await cli(
            stack, data, "run", "--source", src, "--resume", run_id, "--no-progress"
        )
        assert refused.returncode == 2 and "pass --force" in refused.stderr  # a recent heartbeat
        resume = ["run", "--source", src, "--resume", run_id, "--force", "--no-progress", "--json"]

    # 3. resume: same end state as the clean run: rows, chunks (ids, text, metadata, vectors)
    # and every user's BM25 index
    r = await cli(stack, data, *resume)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["state"] == "completed" and report["resumed"]
    assert db_snapshot(superuser_dsn, uids) == want_db
    assert store_snapshot(cli_store, uids) == want_store
    assert lexical_snapshot(cli_lex, uids) == want_lexical
    v = await cli(
        stack, data, "verify", "--source", src, "--run-id", run_id, "--json", "--no-progress"
    )
    assert v.returncode == 0, v.stdout[-2000:]
    s = await cli(stack, data, "status", "--run-id", run_id, "--json")
    items = json.loads(s.stdout)["items"]
    assert not any(st in ("pending", "failed") for states in items.values() for st in states), items


async def test_a_run_that_failed_half_way_is_completed_by_a_new_run(
    services, rag, superuser_dsn, tmp_path, monkeypatch
):
    """Not resumed: a fresh run finds the half-written conversation, adds the missing messages."""
    from pharmgpt.migration import state

    tree = build_legacy_tree(
        tmp_path / "user_data", wrong_dimension_store=False, large_conversation=40
    )
    uids = [u.user_id for u in tree.users.values()]
    real_insert, calls = state.Target.insert, []

    async def crash_in_the_middle(self, table, rows, batch):
        if table == "messages":
            calls.append(len(rows))
            if len(calls) == 2:  # half of this batch lands, then the process "dies"
                await real_insert(self, table, rows[: len(rows) // 2], batch)
                raise RuntimeError("simulated crash")
        return await real_insert(self, table, rows, batch)

    monkeypatch.setattr(state.Target, "insert", crash_in_the_middle)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await Migrator(
            services, tree.root, batch_size=4, store=rag.store, lexical=rag.lexical
        ).run()
    monkeypatch.setattr(state.Target, "insert", real_insert)
    with psycopg.connect(superuser_dsn) as conn:
        first_id, first_state = conn.execute(
            "SELECT id, state FROM migration_runs WHERE source = %s", (str(tree.root),)
        ).fetchone()
    assert first_state == "failed"
    assert db_snapshot(superuser_dsn, uids)["messages"][0] < tree.expected["messages"]
    second = await Migrator(
        services, tree.root, batch_size=4, store=rag.store, lexical=rag.lexical
    ).run()
    assert second["counts"]["conversations_completed"] == 1
    result = await verify(services, tree.root, store=rag.store)
    assert result["ok"], result["mismatches"]
    assert db_snapshot(superuser_dsn, uids)["messages"][0] == tree.expected["messages"]
    # each run's rollback takes back exactly its own share: the second, then the first -> nothing
    await rollback(services, second["run_id"], store=rag.store, lexical=rag.lexical)
    assert 0 < db_snapshot(superuser_dsn, uids)["messages"][0] < tree.expected["messages"]
    await rollback(services, str(first_id), store=rag.store, lexical=rag.lexical)
    assert all(n == 0 for n, _ in db_snapshot(superuser_dsn, uids).values())
    assert all(rag.store.count(u) == 0 for u in uids)


async def test_only_kinds_in_steps_and_a_10000_message_conversation(services, rag, tmp_path):
    tree = build_legacy_tree(
        tmp_path / "user_data",
        wrong_dimension_store=False,
        bad_data=False,
        large_conversation=10_000,
    )
    early = await Migrator(services, tree.root, only=["conversations"], store=rag.store).run()
    assert not early["counts"].get("conversations_written")  # no users yet: nothing to attach
    assert any("--only users first" in p["reason"] for p in early["problems"])
    for kind in ("users", "conversations", "documents", "uploads"):
        r = await Migrator(
            services, tree.root, only=[kind], batch_size=1000, store=rag.store, lexical=rag.lexical
        ).run()
        assert r["state"] == "completed"
        if kind != "users":
            assert r["counts"]["users_existing"] == tree.expected["users"]
    result = await verify(services, tree.root, store=rag.store)
    assert result["ok"], result["mismatches"]
    assert result["counts"]["messages"] == tree.expected["messages"] > 10_000
    dave = tree.user("dave")
    long = next(
        c
        for c in await services.conversations.get_user_conversations(dave.user_id)
        if c.title == "Long one"
    )
    assert long.message_count == 10_000
    latest = await services.conversations.get_messages(dave.user_id, long.id, limit=3)
    assert latest[-1].created_at == long.updated_at


# ---------------------------------------------------------------- rollback
async def test_rollback_restores_the_database_and_the_store(services, rag, superuser_dsn, tmp_path):
    tree = build_legacy_tree(tmp_path / "user_data", wrong_dimension_store=False)
    prefix = tree.user("alice").username.removesuffix("alice")
    # data that is not the migration's: an unrelated account, and one holding a legacy username
    other = await services.users.create_user(f"bystander-{uuid.uuid4().hex[:8]}", "long enough pw")
    await services.conversations.create_conversation(other.id, title="not migrated")
    squatter = await services.users.create_user(f"{prefix}bob", "squatter password")
    db_before = db_snapshot(superuser_dsn)
    chunks_before = all_chunk_counts(rag.store)

    run = await Migrator(
        services, tree.root, batch_size=4, store=rag.store, lexical=rag.lexical
    ).run()
    assert (
        run["counts"]["users_conflict"] == 1
        and run["counts"]["users_written"] == tree.expected["users"] - 1
    )
    assert any("already exists with other data" in p["reason"] for p in run["problems"])
    with psycopg.connect(superuser_dsn) as conn:  # the existing account is untouched
        row = conn.execute(
            "SELECT legacy_user_id, password_scheme FROM users WHERE id = %s", (squatter.id,)
        ).fetchone()
    assert row == (None, "bcrypt")
    assert db_snapshot(superuser_dsn) != db_before

    r = await rollback(services, run["run_id"], store=rag.store, lexical=rag.lexical)
    assert r["removed"]["users"] == tree.expected["users"] - 1 and not r["kept"]
    assert r["removed"]["documents"] == tree.expected["documents"]
    assert db_snapshot(superuser_dsn) == db_before
    assert all_chunk_counts(rag.store) == chunks_before
    with psycopg.connect(superuser_dsn) as conn:
        states = dict(
            conn.execute(
                "SELECT state, count(*) FROM migration_items WHERE run_id = %s GROUP BY 1",
                (run["run_id"],),
            ).fetchall()
        )
        (run_state,) = conn.execute(
            "SELECT state FROM migration_runs WHERE id = %s", (run["run_id"],)
        ).fetchone()
    assert run_state == "rolled_back" and "done" not in states and "pending" not in states
    audit = await services.audit.list(action="migration.rollback", limit=20)
    assert any(e.target_id == run["run_id"] for e in audit)

    # migrated users who have used the app since are kept, with what they added, and the
    # report says exactly what holds each one
    run2 = await Migrator(
        services, tree.root, batch_size=50, store=rag.store, lexical=rag.lexical
    ).run()
    alice, zoe = tree.user("alice"), tree.user("zoë")
    mine = await services.conversations.create_conversation(
        alice.user_id, title="after the migration"
    )
    (zconv,) = await services.conversations.get_user_conversations(zoe.user_id)
    added = await services.conversations.add_message(
        zoe.user_id, zconv.id, {"role": "user", "content": "a question after the migration"}
    )
    r2 = await rollback(services, run2["run_id"], store=rag.store, lexical=rag.lexical)
    kept = {(k["kind"], k["id"]): k["reason"] for k in r2["kept"]}
    assert set(kept) == {("user", alice.user_id), ("user", zoe.user_id), ("conversation", zconv.id)}
    assert kept[("user", alice.user_id)] == (
        "has 1 conversation(s) created after this run (in the app, or by a later migration run)"
    )
    assert kept[("user", zoe.user_id)] == (
        "has 1 migrated conversation(s) with messages added after the migration"
    )
    assert kept[("conversation", zconv.id)] == "1 message(s) were added after the migration"
    left = await services.conversations.get_user_conversations(alice.user_id)
    assert [c.id for c in left] == [mine.id]
    assert rag.store.count(alice.user_id) == 0
    # zoë keeps her conversation with only what she added; the migrated messages are gone
    (zleft,) = await services.conversations.get_messages(zoe.user_id, zconv.id)
    assert zleft.id == added.id


# ---------------------------------------------------------------- pieces
def test_backup_has_a_manifest_and_never_overwrites(tmp_path):
    tree = build_legacy_tree(tmp_path / "user_data", wrong_dimension_store=False)
    out = tmp_path / "backup.tar.gz"
    r = backup(tree.root, out)
    assert r["total_files"] > 10 and out.exists()
    assert check_backup(out) == {"ok": True, "files": r["total_files"], "bad": []}
    before = out.read_bytes()
    with pytest.raises(FileExistsError):
        backup(tree.root, out)
    assert out.read_bytes() == before


def test_cli_detect_and_backup_without_a_database(tmp_path):
    tree = build_legacy_tree(tmp_path / "user_data", wrong_dimension_store=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "pharmgpt", "migrate"]
    r = subprocess.run(
        [*run, "detect", "--source", str(tree.root), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["counts"]["users"] == tree.expected["users"]
    assert any("truncated JSON" in p["reason"] for p in report["problems"])
    out = tmp_path / "b.tar.gz"
    assert (
        subprocess.run(
            [*run, "backup", "--source", str(tree.root), "--out", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
        ).returncode
        == 0
    )
    again = subprocess.run(
        [*run, "backup", "--source", str(tree.root), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "never overwritten" in again.stderr


def test_detect_inventories_and_estimates(tmp_path):
    tree = build_legacy_tree(tmp_path / "user_data", large_conversation=50)
    r = detect(LegacySource(tree.root), deep=True)
    c = r["counts"]
    assert (
        c["users"] == tree.expected["users"]
        and c["conversations"] == tree.expected["conversations"]
    )
    assert c["messages"] == tree.expected["messages"] and c["chunks"] == tree.expected["chunks"]
    assert (
        c["backup_files"] == 2 and c["unknown_user_folders"] == 1 and c["orphan_rag_folders"] == 2
    )
    assert r["estimate_s"] >= 0 and r["problem_counts"]["error"] >= 8


def test_salvage_keeps_complete_entries_of_a_cut_file():
    text = '{\n  "a": {"x": 1},\n  "b": {"y": [1, 2]},\n  "c": {"z": "cut'
    data, error = salvage_object(text)
    assert data == {"a": {"x": 1}, "b": {"y": [1, 2]}} and "line 4" in error
    assert salvage_object('{"a": 1}') == ({"a": 1}, None)
    assert salvage_object("[1, 2]")[0] == {}


def test_salvage_names_the_entries_it_lost():
    cut = salvage('{\n  "a": {"x": 1},\n  "b": {"k": {"nested": [1, {"deep": "}"}]}, "m": [')
    assert cut.entries == {"a": {"x": 1}} and cut.lost == ["b"] and cut.lost_unnamed == 0
    # damage in the middle: what stands after it at the top level is lost, by name
    broken = salvage('{"a": 1, "b": {"x": oops}, "c": {"q": "a \\" b"}, "d": 2}')
    assert broken.entries == {"a": 1} and broken.lost == ["b", "c", "d"]
    # a cut inside a key: counted, without a name
    key_cut = salvage('{"a": 1, "b": 2, "unfinis')
    assert key_cut.entries == {"a": 1, "b": 2} and key_cut.lost == [] and key_cut.lost_unnamed == 1
    assert key_cut.lost_count == 1
    assert salvage('{"a": 1}').lost_count == 0 and salvage('{"a": 1}').error is None


def test_missing_message_times_name_the_time_used(tmp_path):
    root = tmp_path / "user_data"
    (root / f"conversations_{ids.legacy_user_id('ann')}").mkdir(parents=True)
    (root / "users.json").write_text(
        json.dumps(
            {
                "ann": {
                    "password_hash": "a" * 64,
                    "salt": "s" * 64,
                    "created_at": "2025-01-01T10:00:00",
                }
            }
        )
    )
    conv = {
        "title": "t",
        "created_at": "2025-01-01T10:00:00",
        "messages": [
            {"role": "user", "content": "first, no time"},
            {"role": "assistant", "content": "timed", "timestamp": "2025-01-01T10:05:00"},
            {"role": "user", "content": "third, no time"},
        ],
    }
    key = str(uuid.uuid4())
    (root / f"conversations_{ids.legacy_user_id('ann')}" / "conversations.json").write_text(
        json.dumps({key: conv})
    )
    src = LegacySource(root, "UTC")
    (c,) = list(src.conversations(src.users()[0]))
    reasons = {p.reason for p in src.problems}
    assert (
        f"conversation {key}: message #0 has no valid timestamp; the conversation's "
        "created_at is used" in reasons
    )
    assert any(
        "message #2 has no valid timestamp; 1 µs after the previous message's time" in r
        for r in reasons
    )
    assert c.messages[0].created_at == c.created_at
    assert c.messages[2].created_at > c.messages[1].created_at


# ---------------------------------------------------------------- names differing only in case
async def test_case_colliding_legacy_users_both_migrate_and_sign_in(
    services, rag, superuser_dsn, tmp_path
):
    tree = build_case_collision_tree(tmp_path / "user_data")
    prefix = tree.notes["renamed"].removesuffix("alice-3")
    upper, lower, taken = (tree.users[f"{prefix}{n}"] for n in ("Alice", "alice", "alice-2"))
    report = await Migrator(
        services, tree.root, batch_size=2, store=rag.store, lexical=rag.lexical
    ).run()
    assert report["state"] == "completed"
    for kind in ("users", "conversations", "messages", "documents", "chunks", "uploads"):
        assert report["counts"].get(f"{kind}_written", 0) == tree.expected[kind], kind
    # the rule: Alice signed up first and keeps the name; alice skips the taken alice-2
    assert report["renamed"] == [
        {
            "legacy_username": lower.username,
            "username": f"{prefix}alice-3",
            "legacy_id": lower.legacy_id,
            "user_id": lower.user_id,
        }
    ]
    assert not any("unknown user" in p["reason"] for p in report["problems"])
    (note,) = [p for p in report["problems"] if p.get("renamed_to")]
    assert note["key"] == lower.legacy_id and "signed up first and keeps the name" in note["reason"]
    with psycopg.connect(superuser_dsn) as conn:
        rows = dict(
            conn.execute(
                "SELECT legacy_user_id, username FROM users WHERE legacy_user_id = ANY(%s)",
                ([u.legacy_id for u in (upper, lower, taken)],),
            ).fetchall()
        )
    assert rows == {
        upper.legacy_id: upper.username,
        lower.legacy_id: f"{prefix}alice-3",
        taken.legacy_id: taken.username,
    }
    # her own md5 id, history, document and uploads came along
    convs = await services.conversations.get_user_conversations(lower.user_id)
    assert {c.id for c in convs} == set(lower.conversations)
    assert [u.filename for u in await services.documents.get_upload_history(lower.user_id)] == [
        "metformin notes.txt"
    ]
    assert await rag.retriever.retrieve(lower.user_id, "metformin eGFR", None, k=2)

    result = await verify(services, tree.root, run_id=report["run_id"], store=rag.store)
    assert result["ok"], result["mismatches"]
    assert [(r["legacy_username"], r["username"], r["ok"]) for r in result["renamed"]] == [
        (lower.username, f"{prefix}alice-3", True)
    ]

    # both sign in with their old passwords: Alice under her name, alice under the new one
    assert (await services.users.authenticate_user(upper.username, upper.password)).id == (
        upper.user_id
    )
    assert (await services.users.authenticate_user(f"{prefix}alice-3", lower.password)).id == (
        lower.user_id
    )
    assert (await services.users.authenticate_user(taken.username, taken.password)).id == (
        taken.user_id
    )
    # alice typing her old name with her password is told the new one, and never counts as a
    # failure against Alice: more attempts than the lockout threshold leave Alice unlocked
    for _ in range(services.settings.max_failed_logins + 2):
        with pytest.raises(AuthError, match=f"renamed to “{prefix}alice-3”"):
            await services.users.authenticate_user(lower.username, lower.password)
    with psycopg.connect(superuser_dsn) as conn:
        failures = dict(
            conn.execute(
                "SELECT id::text, failed_logins FROM users WHERE id = ANY(%s::uuid[])",
                ([upper.user_id, lower.user_id],),
            ).fetchall()
        )
    assert failures == {upper.user_id: 0, lower.user_id: 0}
    # Alice still signs in, also typing her name in lower case (sign-in ignores case)
    assert (await services.users.authenticate_user(upper.username, upper.password)).id == (
        upper.user_id
    )
    assert (await services.users.authenticate_user(lower.username, upper.password)).id == (
        upper.user_id
    )
    # a wrong password under the old name is an ordinary failure (of the account it names now)
    with pytest.raises(AuthError, match="Wrong username or password"):
        await services.users.authenticate_user(lower.username, "neither-password")
    # a second run finds both where they are
    again = await Migrator(services, tree.root, store=rag.store, lexical=rag.lexical).run()
    assert again["counts"]["users_existing"] == 3 and not again["counts"].get("users_written")


# ---------------------------------------------------------------- status of a stopped run
async def test_status_shows_a_run_without_heartbeat_as_stale(
    services, stack, superuser_dsn, tmp_path
):
    from pharmgpt.migration.state import Target

    t = Target(services)
    src = str(tmp_path / "user_data")
    live = await t.create_run({"source": src, "source_fingerprint": "x", "state": "running"})
    dead = await t.create_run({"source": src, "source_fingerprint": "x", "state": "running"})
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE migration_runs SET heartbeat_at = now() - interval '10 minutes' WHERE id = %s",
            (dead["id"],),
        )
        (beat,) = conn.execute(
            "SELECT heartbeat_at FROM migration_runs WHERE id = %s", (dead["id"],)
        ).fetchone()
    data = tmp_path / "cli"
    data.mkdir()
    r = await cli(stack, data, "status")
    assert r.returncode == 0, r.stderr
    line = {x.split()[0]: x for x in r.stdout.splitlines() if x.split()}
    stamp = beat.astimezone(UTC).isoformat()[:19]
    assert f"stale (no heartbeat since {stamp})" in line[dead["id"]]
    assert " running " in line[live["id"]] and "stale" not in line[live["id"]]
    assert f"resume it with: pharmgpt migrate run --source {src} --resume {dead['id']}" in r.stdout
    assert f"--resume {live['id']}" not in r.stdout
    one = await cli(stack, data, "status", "--run-id", dead["id"], "--json")
    assert json.loads(one.stdout)["run"]["stale"] is True
    # a stale run no longer blocks others, and can be rolled back without --force
    await rollback(services, dead["id"], store=store_for(services.settings)[0])
    with pytest.raises(RollbackError, match="is running"):
        await rollback(services, live["id"], store=store_for(services.settings)[0])
    await rollback(services, live["id"], store=store_for(services.settings)[0], force=True)
