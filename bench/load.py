"""Load: simulated pharmacists on the real services plus retrieval, no browser.

A throwaway localbase stack (127.0.0.1 only) and one process holding the
services and the RAG side, as one app server does. Setup (not measured): a
template user's library gets two FDA labels (Lipitor, an OTC cough syrup)
through the real upload → worker path (parse, chunk, embed, Chroma, BM25);
every simulated user then gets a copy (document rows, their own Chroma
collection with the same vectors, their own BM25 segments), so 50 users do
not mean 50 embeddings of the same labels.

Measured: all users at once, each signing in (password check + session),
listing conversations, starting one, asking 5 questions (offline extractive
answers: retrieval, gate, answer, the question and the answer appended as
messages) and reopening the conversation. Reported: operations per second over
the run, p50/p95/p99 per operation and errors counted per operation. Bounded:
`--users` (default 50), `--questions` (5) and a wall-clock `--timeout` (300 s)
after which unfinished users count as errors.

    .venv/bin/python bench/load.py [--users 50] [--questions 5] [--timeout 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pharmgpt.localbase.stack import LocalStack  # noqa: E402
from pharmgpt.rag.eval_pharm import DEFAULT_LABELS  # noqa: E402
from pharmgpt.services.config import Settings  # noqa: E402
from pharmgpt.services.container import Services  # noqa: E402

from bench.figures import pct  # noqa: E402

QUESTIONS = [
    "What is the recommended starting dose of atorvastatin?",
    "Can Lipitor be taken during pregnancy?",
    "What are the most common side effects of atorvastatin?",
    "Which medicines interact with atorvastatin?",
    "How much of the cough syrup can an adult take?",
    "What should patients with liver disease know about Lipitor?",
]
LABELS = ("lipitor-orig.xml", "cough.xml")
PASSWORD = "load test password 1"


def clone_library(rag, dsn: str, template: str, users: list[str]) -> None:
    """Give each user their own copy of the template's ready documents (rows, vectors, BM25)."""
    with psycopg.connect(dsn) as conn:
        docs = conn.execute(
            "SELECT id, sha256, filename, file_type, file_size, page_count, chunk_count, "
            "metadata FROM documents WHERE user_id = %s AND status = 'ready'",
            (template,),
        ).fetchall()
        stored = {
            str(d[0]): rag.store.get(template, document_id=str(d[0]), embeddings=True) for d in docs
        }
        for uid in users:
            for d in docs:
                new = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO documents (id, user_id, sha256, filename, file_type, file_size, page_count, "
                    "chunk_count, status, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'ready', %s)",
                    (new, uid, *d[1:7], psycopg.types.json.Jsonb(d[7])),
                )
                src = stored[str(d[0])]
                ids = [f"{new}:{cid.rsplit(':', 1)[1]}" for cid in src["ids"]]
                metas = [{**m, "document_id": new} for m in src["metadatas"]]
                rag.store.upsert(uid, ids, src["embeddings"], list(src["documents"]), metas)
                rag.lexical.add_document(uid, new, list(zip(ids, src["documents"], strict=True)))
        conn.commit()


async def simulate(svc, rag, username: str, questions: int, times: dict, errors: dict) -> None:
    async def op(name, coro):
        t = time.perf_counter()
        try:
            result = await coro
        except Exception as e:  # counted, and the user goes on where it can
            errors[name] = errors.get(name, 0) + 1
            errors.setdefault("_examples", []).append(f"{name}: {type(e).__name__}: {e}"[:200])
            return None
        times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return result

    async def sign_in():
        user = await svc.users.authenticate_user(username, PASSWORD, ip="127.0.0.1")
        token = await svc.sessions.create_session(user.id, ip="127.0.0.1", user_agent="bench/load")
        return user, token

    got = await op("sign_in", sign_in())
    if got is None:
        return
    user, token = got
    await op("list_conversations", svc.conversations.get_user_conversations(user.id, limit=30))
    conv = await op(
        "new_conversation", svc.conversations.create_conversation(user.id, title="Load test")
    )
    if conv is None:
        return

    async def ask(q):
        events = [e async for e in rag.engine.answer(user.id, conv.id, q)]
        if not any(e["type"] == "done" for e in events):
            raise RuntimeError("the answer was not stored")
        return events

    for i in range(questions):
        await op("answer_offline", ask(QUESTIONS[i % len(QUESTIONS)]))
    await op("open_conversation", svc.conversations.get_messages(user.id, conv.id, limit=50))
    await op("list_conversations", svc.conversations.get_user_conversations(user.id, limit=30))
    await op("validate_session", svc.sessions.validate_session(token))


async def run(args) -> dict:
    from pharmgpt.rag_system import RagSystem

    root = Path(tempfile.mkdtemp(prefix="pharmgpt-load-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        settings = Settings(
            supabase_url=info.url,
            supabase_anon_key=info.anon_key,
            supabase_service_role_key=info.service_role_key,
            supabase_jwt_secret=info.jwt_secret,
            data_dir=root / "svc",
            slow_call_ms=1e9,
            bcrypt_rounds=args.bcrypt_rounds,
            groq_api_key=None,
            openai_base_url=None,
            chroma_host=None,
        )
        svc = await Services.create(settings)
        rag = RagSystem(svc, use_configured_provider=False)
        t0 = time.perf_counter()
        template = await svc.users.create_user(f"load-template-{uuid.uuid4().hex[:6]}", PASSWORD)
        for name in LABELS:
            await svc.documents.register_upload(
                template.id, name, (DEFAULT_LABELS / name).read_bytes()
            )
        while await rag.worker.run_once():
            pass
        names = [f"load-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(args.users)]
        users = [await svc.users.create_user(n, PASSWORD) for n in names]
        await asyncio.to_thread(clone_library, rag, info.db_uri, template.id, [u.id for u in users])
        svc.cache.clear()
        setup_s = time.perf_counter() - t0

        times: dict[str, list[float]] = {}
        errors: dict = {}
        t0 = time.perf_counter()
        tasks = [
            asyncio.ensure_future(simulate(svc, rag, n, args.questions, times, errors))
            for n in names
        ]
        done, pending = await asyncio.wait(tasks, timeout=args.timeout)
        for t in pending:
            t.cancel()
        wall = time.perf_counter() - t0
        errors["unfinished_users"] = len(pending)
        total_ops = sum(len(v) for v in times.values())
        ops = {
            name: {
                "n": len(v),
                "p50": round(pct(v, 50), 1),
                "p95": round(pct(v, 95), 1),
                "p99": round(pct(v, 99), 1),
                "max": round(max(v), 1),
                "errors": errors.get(name, 0),
            }
            for name, v in times.items()
        }
        for name, n in errors.items():
            if name not in ops and not name.startswith("_") and name != "unfinished_users":
                ops[name] = {"n": 0, "errors": n}
        await svc.close()
        return {
            "users": args.users,
            "questions_per_user": args.questions,
            "setup_s": round(setup_s, 1),
            "wall_s": round(wall, 1),
            "ops_per_s": round(total_ops / wall, 1),
            "operations": ops,
            "errors_total": sum(v for k, v in errors.items() if not k.startswith("_")),
            "error_examples": errors.get("_examples", [])[:5],
        }
    finally:
        stack.down()
        stack.pg.reset()


def report(r: dict) -> None:
    print(
        f"load: {r['users']} users at once, {r['questions_per_user']} questions each (setup {r['setup_s']} s); "
        f"{r['wall_s']} s wall, {r['ops_per_s']} operations/s, errors {r['errors_total']}"
    )
    print(
        f"{'operation':<22}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
    )
    for name, s in r["operations"].items():
        if not s.get("n"):
            print(f"{name:<22}{0:>6}{'':>36}{s['errors']:>8}")
            continue
        print(
            f"{name:<22}{s['n']:>6}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}{s['errors']:>8}"
        )
    for e in r["error_examples"]:
        print("  error:", e)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument(
        "--timeout", type=float, default=300.0, help="wall-clock bound of the measured part, s"
    )
    ap.add_argument(
        "--bcrypt-rounds", type=int, default=12, help="the password hash cost (the app's default)"
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.users <= 200 or not 1 <= a.questions <= 20:
        ap.error("--users is 1..200 and --questions 1..20: the run stays bounded")
    out = asyncio.run(run(a))
    print(json.dumps(out, indent=2)) if a.json else report(out)
