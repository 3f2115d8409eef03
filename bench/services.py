"""Service-level latency on localbase: what a pharmacist's clicks cost.

One measured user with 1,000 conversations x 20 messages (one of them with
500 messages) among 50 users (the other 49 with 100 x 20 each), then p50/p95
of: list the first page of conversations, open a conversation (latest 50 of
500 messages), append a message, search a word in titles and message text.
Reads are timed with the service cache cleared before each call (the real
path); the cached figure for the list is printed too.

    .venv/bin/python bench/services.py [--iterations 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.figures import pct  # noqa: E402
from localbase.stack import LocalStack  # noqa: E402
from services.config import Settings  # noqa: E402
from services.container import Services  # noqa: E402

WORDS = ("warfarin", "atorvastatin", "metformin", "lisinopril", "amoxicillin", "omeprazole", "sertraline",
         "dose", "renal", "hepatic", "interaction", "pregnancy", "contraindicated", "tablet", "mg")


def text(i: int, n: int = 12) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + f" #{i}"


def seed(dsn: str, users: int, convs_main: int, convs_other: int, msgs: int, long_conv: int) -> tuple[str, str]:
    """Bulk-load through COPY as the superuser (setup, not what is measured)."""
    main_id = str(uuid.uuid4())
    long_id = None
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            uids = [main_id] + [str(uuid.uuid4()) for _ in range(users - 1)]
            with cur.copy("COPY users (id, username, password_hash) FROM STDIN") as cp:
                for i, u in enumerate(uids):
                    cp.write_row((u, f"bench-{i}-{u[:6]}", "$2b$04$" + "x" * 53))
            conv_rows, msg_rows = [], []
            for ui, u in enumerate(uids):
                n = convs_main if ui == 0 else convs_other
                for c in range(n):
                    cid = str(uuid.uuid4())
                    if ui == 0 and c == 0:
                        long_id = cid
                    k = long_conv if (ui == 0 and c == 0) else msgs
                    created = t0 + timedelta(minutes=c)
                    conv_rows.append((cid, u, f"Question {c} about {WORDS[c % len(WORDS)]}", k, created,
                                      created + timedelta(seconds=k)))
                    for m in range(k):
                        msg_rows.append((str(uuid.uuid4()), cid, u, "user" if m % 2 == 0 else "assistant",
                                         text(c * 31 + m), created + timedelta(seconds=m)))
            with cur.copy("COPY conversations (id, user_id, title, message_count, created_at, updated_at) "
                          "FROM STDIN") as cp:
                for r in conv_rows:
                    cp.write_row(r)
            # COPY fires the statement trigger once; reset the counts it added to the seeded values
            with cur.copy("COPY messages (id, conversation_id, user_id, role, content, created_at) FROM STDIN") as cp:
                for r in msg_rows:
                    cp.write_row(r)
            cur.execute("""UPDATE conversations c SET message_count = s.n, updated_at = s.last
                             FROM (SELECT conversation_id, count(*) n, max(created_at) last FROM messages
                                    GROUP BY 1) s WHERE s.conversation_id = c.id""")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return main_id, long_id




async def timed(fn, n, before=None):
    out = []
    for _ in range(10):
        if before:
            before()
        await fn()
    for _ in range(n):
        if before:
            before()
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return {"p50": round(statistics.median(out), 2), "p95": round(pct(out, 95), 2), "max": round(max(out), 2)}


async def run(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        t = time.perf_counter()
        main_id, long_id = seed(info.db_uri, args.users, args.conversations, args.other_conversations,
                                args.messages, args.long_conversation)
        seed_s = time.perf_counter() - t
        settings = Settings(**info.settings_overrides(),
                            data_dir=root / "svc", slow_call_ms=1e9)
        svc = await Services.create(settings)
        cs = svc.conversations
        clear = svc.cache.clear
        res = {
            "list_first_page": await timed(lambda: cs.get_user_conversations(main_id, limit=30), args.iterations,
                                           clear),
            "list_first_page_cached": await timed(lambda: cs.get_user_conversations(main_id, limit=30),
                                                  args.iterations),
            "open_conversation_50_of_500": await timed(lambda: cs.get_messages(main_id, long_id, limit=50),
                                                       args.iterations, clear),
            "append_message": await timed(lambda: cs.add_message(main_id, long_id, {
                "role": "user", "content": "How does renal impairment change the dose?"}), args.iterations),
            "search_word": await timed(lambda: cs.search_conversations(main_id, "lisinopril renal"),
                                       args.iterations),
            "search_rare_word": await timed(lambda: cs.search_conversations(main_id, "#12345"), args.iterations),
            "search_common_word": await timed(lambda: cs.search_conversations(main_id, "dose"), args.iterations),
        }
        with psycopg.connect(info.db_uri) as conn:
            counts = conn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM conversations), "
                                  "(SELECT count(*) FROM messages)").fetchone()
        await svc.close()
        return {"latency_ms": res, "data": {"users": counts[0], "conversations": counts[1], "messages": counts[2]},
                "seed_seconds": round(seed_s, 1), "iterations": args.iterations}
    finally:
        stack.down()
        stack.pg.reset()


def report(r: dict) -> None:
    d = r["data"]
    print(f"services benchmark: {d['users']} users, {d['conversations']} conversations, {d['messages']} messages "
          f"(seeded in {r['seed_seconds']} s); {r['iterations']} timed calls each")
    print(f"{'operation':<32}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for name, s in r["latency_ms"].items():
        print(f"{name:<32}{s['p50']:>9.2f}{s['p95']:>9.2f}{s['max']:>9.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--other-conversations", type=int, default=100)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--long-conversation", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = asyncio.run(run(a))
    print(json.dumps(out, indent=2)) if a.json else report(out)
