"""Load: simulated pharmacists on the real services plus retrieval, no browser.

A throwaway localbase stack (127.0.0.1 only) and one process holding the
services and the RAG side, as one app server does. Setup (not measured): a
template user's library gets two FDA labels (Lipitor, an OTC cough syrup)
through the real upload → worker path (parse, chunk, embed, Chroma, BM25);
every simulated user then gets a copy (document rows, their own Chroma
collection with the same vectors, their own BM25 segments), so 50 users do
not mean 50 embeddings of the same labels.

Measured: each user signs in (password check + session), lists conversations,
starts one, asks 5 questions (offline extractive answers: retrieval, gate,
answer, the question and the answer appended as messages) and reopens the
conversation. Two modes, either or both in one run:

* `saturate` (closed loop): all users at once, no think time. This measures the
  machine's capacity (operations/s); its latencies are mostly queueing, since
  50 users always waiting on 2 cores make each wait for the others.
* `paced` (open loop): users arrive one every `--ramp-s / --users` seconds and
  wait a think time between their actions (exponential, mean `--think-s`,
  seeded), as people reading answers do. This measures what one action costs at
  that offered rate; the output states the rate.

First, `--alone N` answers are asked by one user with nothing else running, and
the time is split by stage (the services' own timers and the retrieval calls).

Reported: operations per second over each run, p50/p95/p99 per operation and
errors counted per operation. Bounded: `--users` (default 50), `--questions` (5)
and a wall-clock `--timeout` (300 s) per mode after which unfinished users count
as errors. 127.0.0.1 only.

    .venv/bin/python bench/load.py [--mode both|saturate|paced] [--think-s 10] [--ramp-s 30]
                                   [--users 50] [--questions 5] [--alone 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
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
                    "INSERT INTO documents (id, user_id, sha256, filename, file_type, file_size, "
                    "page_count, chunk_count, status, metadata) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'ready', %s)",
                    (new, uid, *d[1:7], psycopg.types.json.Jsonb(d[7])),
                )
                src = stored[str(d[0])]
                ids = [f"{new}:{cid.rsplit(':', 1)[1]}" for cid in src["ids"]]
                metas = [{**m, "document_id": new} for m in src["metadatas"]]
                rag.store.upsert(uid, ids, src["embeddings"], list(src["documents"]), metas)
                rag.lexical.add_document(uid, new, list(zip(ids, src["documents"], strict=True)))
        conn.commit()


async def simulate(
    svc,
    rag,
    username: str,
    questions: int,
    times: dict,
    errors: dict,
    *,
    start_s: float = 0.0,
    think_s: float = 0.0,
    seed: int = 0,
) -> None:
    """One user's visit. `start_s`: arrival delay; `think_s`: mean pause before each action
    after the first (0: none, the closed loop)."""
    rng = random.Random(seed)
    await asyncio.sleep(start_s)
    first = True

    async def op(name, coro):
        nonlocal first
        if think_s and not first:
            await asyncio.sleep(rng.expovariate(1 / think_s))
        first = False
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
            **info.settings_overrides(),
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
        out = {
            "users": args.users,
            "questions_per_user": args.questions,
            "setup_s": round(setup_s, 1),
        }
        if args.alone:
            out["alone"] = await answers_alone(svc, rag, names[0], args.alone)
        modes = ("paced", "saturate") if args.mode == "both" else (args.mode,)
        for mode in modes:
            svc.cache.clear()
            out[mode] = await run_mode(svc, rag, names, mode, args)
        await svc.close()
        return out
    finally:
        stack.down()
        stack.pg.reset()


async def answers_alone(svc, rag, username: str, n: int) -> dict:
    """`n` offline answers by one user, nothing else running: the cost of one answer by stage."""
    user = await svc.users.authenticate_user(username, PASSWORD, ip="127.0.0.1")
    retriever = rag.engine.retriever
    stages: dict[str, list[float]] = {"retrieval (embed + Chroma + BM25 + fuse)": []}
    real = retriever.retrieve

    async def retrieve(*a, **k):
        t = time.perf_counter()
        try:
            return await real(*a, **k)
        finally:
            stages["retrieval (embed + Chroma + BM25 + fuse)"].append(
                (time.perf_counter() - t) * 1000
            )

    retriever.retrieve = retrieve
    try:
        conv = await svc.conversations.create_conversation(user.id, title="Alone")
        for q in QUESTIONS:  # warm: first embedding, first BM25 segment reads
            [e async for e in rag.engine.answer(user.id, conv.id, q)]
        for k in list(svc.metrics.snapshot()):
            svc.metrics.reset(k)
        stages["retrieval (embed + Chroma + BM25 + fuse)"].clear()
        total = []
        for i in range(n):
            conv = await svc.conversations.create_conversation(user.id, title="Alone")
            t = time.perf_counter()
            [e async for e in rag.engine.answer(user.id, conv.id, QUESTIONS[i % len(QUESTIONS)])]
            total.append((time.perf_counter() - t) * 1000)
    finally:
        del retriever.retrieve
    per = {
        op: {"calls_per_answer": round(s.count / n, 2), "p50": round(s.p50_ms, 2)}
        for op, s in svc.metrics.snapshot().items()
        if op != "conversations.create"
    }
    for name, v in stages.items():
        per[name] = {
            "calls_per_answer": round(len(v) / n, 2),
            "p50": round(statistics.median(v), 2),
        }
    return {
        "n": n,
        "p50": round(pct(total, 50), 1),
        "p95": round(pct(total, 95), 1),
        "stages": per,
    }


async def run_mode(svc, rag, names: list[str], mode: str, args) -> dict:
    paced = mode == "paced"
    gap = args.ramp_s / len(names) if paced else 0.0
    think = args.think_s if paced else 0.0
    times: dict[str, list[float]] = {}
    errors: dict = {}
    t0 = time.perf_counter()
    tasks = [
        asyncio.ensure_future(
            simulate(
                svc,
                rag,
                n,
                args.questions,
                times,
                errors,
                start_s=i * gap,
                think_s=think,
                seed=args.seed * 1000 + i,
            )
        )
        for i, n in enumerate(names)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    wall = time.perf_counter() - t0
    errors["unfinished_users"] = len(pending)
    total_ops = sum(len(v) for v in times.values())
    actions = args.questions + 6  # sign in, list, new, the answers, reopen, list, validate
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
    return {
        "mode": mode,
        "arrival_per_s": round(1 / gap, 2) if gap else None,
        "think_s_mean": think,
        # while every user is in their visit: each does one action per think time
        "offered_ops_per_s": round(len(names) / think, 2) if think else None,
        "offered_answers_per_s": round(len(names) / think * args.questions / actions, 2)
        if think
        else None,
        "wall_s": round(wall, 1),
        "ops_per_s": round(total_ops / wall, 1),
        "operations": ops,
        "errors_total": sum(v for k, v in errors.items() if not k.startswith("_")),
        "error_examples": errors.get("_examples", [])[:5],
    }


def report(out: dict) -> None:
    print(
        f"load: {out['users']} users, {out['questions_per_user']} questions each "
        f"(setup {out['setup_s']} s)"
    )
    if "alone" in out:
        a = out["alone"]
        print(
            f"\none user alone, {a['n']} offline answers: "
            f"p50 {a['p50']} ms, p95 {a['p95']} ms; by stage:"
        )
        for op, s in a["stages"].items():
            print(f"  {op:<44}{s['calls_per_answer']:>6} calls/answer  p50 {s['p50']:>8.2f} ms")
    for mode in ("paced", "saturate"):
        if mode in out:
            report_mode(out[mode])


def report_mode(r: dict) -> None:
    if r["mode"] == "paced":
        how = (
            f"paced (open loop): one user arriving every {1 / r['arrival_per_s']:.2f} s "
            f"({r['arrival_per_s']}/s), think time exponential, mean {r['think_s_mean']} s; "
            f"offered at most {r['offered_ops_per_s']} operations/s "
            f"({r['offered_answers_per_s']} answers/s) with every user in their visit"
        )
    else:
        how = "saturate (closed loop): all users at once, no think time"
    print(f"\n{how}")
    print(
        f"{r['wall_s']} s wall, {r['ops_per_s']} operations/s achieved, errors {r['errors_total']}"
    )
    print(
        f"{'operation':<22}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
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
    ap.add_argument("--mode", choices=("both", "saturate", "paced"), default="both")
    ap.add_argument("--think-s", type=float, default=10.0, help="paced: mean think time, s")
    ap.add_argument("--ramp-s", type=float, default=30.0, help="paced: users arrive over this, s")
    ap.add_argument(
        "--alone", type=int, default=20, help="answers by one user alone first (0: none)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not 1 <= a.users <= 200 or not 1 <= a.questions <= 20 or not 0 <= a.alone <= 200:
        ap.error("--users is 1..200, --questions 1..20, --alone 0..200: the run stays bounded")
    if a.think_s <= 0 or a.ramp_s < 0:
        ap.error("--think-s must be > 0 and --ramp-s >= 0")
    out = asyncio.run(run(a))
    print(json.dumps(out, indent=2)) if a.json else report(out)
