"""Service-level latency on localbase: what a pharmacist's clicks cost.

One measured user with 1,000 conversations x 20 messages (one of them with
500 messages) among 50 users (the other 49 with 100 x 20 each), then p50/p95
of: list the first page of conversations, open a conversation (latest 50 of
500 messages), append a message, search a word in titles and message text.
Reads are timed with the service cache cleared before each call (the real
path); the cached figure for the list is printed too.

    .venv/bin/python bench/services.py [--iterations 200] [--json]

`--search-scale` (issue 14) instead measures conversation search for one user
at 20,000 and then 200,000 messages (10 other users with 2,000 each), side by
side in one run: before = the substring search of sql/0007 (ILIKE over
trigram indexes, installed here under another name), after = the full-text
search of sql/0030, both through the services' RPC path:

    .venv/bin/python bench/services.py --search-scale [--iterations 100] [--json]
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
from pharmgpt.localbase.stack import LocalStack  # noqa: E402
from pharmgpt.services.config import Settings  # noqa: E402
from pharmgpt.services.container import Services  # noqa: E402

from bench.figures import pct  # noqa: E402

WORDS = (
    "warfarin",
    "atorvastatin",
    "metformin",
    "lisinopril",
    "amoxicillin",
    "omeprazole",
    "sertraline",
    "dose",
    "renal",
    "hepatic",
    "interaction",
    "pregnancy",
    "contraindicated",
    "tablet",
    "mg",
)


def text(i: int, n: int = 12) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + f" #{i}"


def conversation_rows(user_id: str, c: int, msgs: int, t0: datetime) -> tuple[tuple, list[tuple]]:
    """One generated conversation (number `c`) with `msgs` alternating messages, as COPY rows."""
    cid = str(uuid.uuid4())
    created = t0 + timedelta(minutes=c)
    conv = (
        cid,
        user_id,
        f"Question {c} about {WORDS[c % len(WORDS)]}",
        msgs,
        created,
        created + timedelta(seconds=msgs),
    )
    return conv, [
        (
            str(uuid.uuid4()),
            cid,
            user_id,
            "user" if m % 2 == 0 else "assistant",
            text(c * 31 + m),
            created + timedelta(seconds=m),
        )
        for m in range(msgs)
    ]


def copy_conversations(cur, conv_rows: list[tuple], msg_rows: list[tuple]) -> None:
    with cur.copy(
        "COPY conversations (id, user_id, title, message_count, created_at, updated_at) FROM STDIN"
    ) as cp:
        for r in conv_rows:
            cp.write_row(r)
    with cur.copy(
        "COPY messages (id, conversation_id, user_id, role, content, created_at) FROM STDIN"
    ) as cp:
        for r in msg_rows:
            cp.write_row(r)


def seed(
    dsn: str, users: int, convs_main: int, convs_other: int, msgs: int, long_conv: int
) -> tuple[str, str]:
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
                    conv, rows = conversation_rows(
                        u, c, long_conv if (ui == 0 and c == 0) else msgs, t0
                    )
                    if ui == 0 and c == 0:
                        long_id = conv[0]
                    conv_rows.append(conv)
                    msg_rows.extend(rows)
            # COPY fires the statement trigger once; the counts it added are reset to the seeded
            # values below
            copy_conversations(cur, conv_rows, msg_rows)
            cur.execute("""UPDATE conversations c SET message_count = s.n, updated_at = s.last
                             FROM (SELECT conversation_id, count(*) n, max(created_at) last
                                   FROM messages GROUP BY 1) s
                            WHERE s.conversation_id = c.id""")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return main_id, long_id


async def timed(fn, n, before=None, raw=False):
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
    return out if raw else summary(out)


def summary(out: list[float]) -> dict:
    return {
        "p50": round(statistics.median(out), 2),
        "p95": round(pct(out, 95), 2),
        "max": round(max(out), 2),
    }


async def run(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        t = time.perf_counter()
        main_id, long_id = seed(
            info.db_uri,
            args.users,
            args.conversations,
            args.other_conversations,
            args.messages,
            args.long_conversation,
        )
        seed_s = time.perf_counter() - t
        settings = Settings(**info.settings_overrides(), data_dir=root / "svc", slow_call_ms=1e9)
        svc = await Services.create(settings)
        cs = svc.conversations
        clear = svc.cache.clear
        res = {
            "list_first_page": await timed(
                lambda: cs.get_user_conversations(main_id, limit=30), args.iterations, clear
            ),
            "list_first_page_cached": await timed(
                lambda: cs.get_user_conversations(main_id, limit=30), args.iterations
            ),
            "open_conversation_50_of_500": await timed(
                lambda: cs.get_messages(main_id, long_id, limit=50), args.iterations, clear
            ),
            "append_message": await timed(
                lambda: cs.add_message(
                    main_id,
                    long_id,
                    {"role": "user", "content": "How does renal impairment change the dose?"},
                ),
                args.iterations,
            ),
            "search_word": await timed(
                lambda: cs.search_conversations(main_id, "lisinopril renal"), args.iterations
            ),
            "search_rare_word": await timed(
                lambda: cs.search_conversations(main_id, "#12345"), args.iterations
            ),
            "search_common_word": await timed(
                lambda: cs.search_conversations(main_id, "dose"), args.iterations
            ),
        }
        with psycopg.connect(info.db_uri) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM conversations), "
                "(SELECT count(*) FROM messages)"
            ).fetchone()
        await svc.close()
        return {
            "latency_ms": res,
            "data": {"users": counts[0], "conversations": counts[1], "messages": counts[2]},
            "seed_seconds": round(seed_s, 1),
            "iterations": args.iterations,
        }
    finally:
        stack.down()
        stack.pg.reset()


# sql/0007's search, verbatim but renamed: the "before" of --search-scale
ILIKE_SEARCH = r"""
CREATE OR REPLACE FUNCTION public.bench_search_ilike(query text, max_results integer DEFAULT 20)
RETURNS SETOF public.conversations
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  WITH pattern AS (
    SELECT '%' || replace(replace(replace(query, '\', '\\'), '%', '\%'), '_', '\_') || '%' AS p
  )
  SELECT c.*
    FROM public.conversations c, pattern
   WHERE c.user_id = auth.uid()
     AND (c.title ILIKE pattern.p
          OR c.id IN (SELECT m.conversation_id FROM public.messages m
                       WHERE m.user_id = auth.uid() AND m.content ILIKE pattern.p))
   ORDER BY c.is_pinned DESC, c.updated_at DESC
   LIMIT least(greatest(max_results, 1), 200)
$$;
GRANT EXECUTE ON FUNCTION public.bench_search_ilike(text, integer) TO authenticated;
"""


def fts_0030_search() -> str:
    """sql/0030's search_conversation_hits, verbatim but renamed: the previous full-text search
    (SECURITY INVOKER, so under RLS its GIN indexes could not be used; sql/0031 explains)."""
    from importlib.resources import files

    text = files("pharmgpt.sql").joinpath("0030_conversation_fts.sql").read_text()
    body = text[
        text.index("CREATE OR REPLACE FUNCTION public.search_conversation_hits") : text.index(
            "REVOKE ALL ON FUNCTION public.search_conversation_hits"
        )
    ]
    return (
        body.replace("public.search_conversation_hits(", "public.bench_search_fts0030(", 1)
        + "GRANT EXECUTE ON FUNCTION public.bench_search_fts0030(text, integer) TO authenticated;\n"
    )


SEARCHES = {
    "word": "lisinopril renal",
    "stemmed": "dosing",
    "rare_token": "#12345",
    "common_word": "dose",
}


def seed_more(dsn: str, user_id: str, convs: int, msgs: int, start: int) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        conv_rows, msg_rows = [], []
        for c in range(start, start + convs):
            conv, rows = conversation_rows(user_id, c, msgs, t0)
            conv_rows.append(conv)
            msg_rows.extend(rows)
        copy_conversations(cur, conv_rows, msg_rows)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE messages")
        conn.execute("VACUUM ANALYZE conversations")


def in_db(dsn: str, user_id: str, q: str, n: int, rounds: int) -> dict:
    fns = ("bench_search_ilike", "bench_search_fts0030", "search_conversation_hits")
    out: dict[str, list[float]] = {f: [] for f in fns}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (user_id,))
        for _ in range(rounds):
            for f in fns:
                for i in range(n + 5):
                    t = time.perf_counter()
                    conn.execute(f"SELECT * FROM public.{f}(%s, 20)", (q,)).fetchall()
                    if i >= 5:
                        out[f].append((time.perf_counter() - t) * 1000)
    return {f: summary(v) for f, v in out.items()}


async def run_search_scale(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        main_id, _ = seed(
            info.db_uri, 11, 1000, 100, 20, 20
        )  # the user: 1,000 x 20 = 20,000 messages
        with psycopg.connect(info.db_uri, autocommit=True) as conn:
            conn.execute(ILIKE_SEARCH)
            conn.execute(fts_0030_search())
            conn.execute("NOTIFY pgrst, 'reload schema'")  # the gateway learns the new function
        await asyncio.sleep(2)
        settings = Settings(
            **info.settings_overrides(),
            data_dir=root / "svc",
            slow_call_ms=1e9,
        )
        svc = await Services.create(settings)
        cs = svc.conversations
        db = await svc.backend.for_user(main_id)

        async def before(q):
            await svc.backend.execute(
                db.rpc("bench_search_ilike", {"query": q, "max_results": 20}), what="search"
            )

        async def fts0030(q):
            await svc.backend.execute(
                db.rpc("bench_search_fts0030", {"query": q, "max_results": 20}), what="search"
            )

        out: dict = {}
        for size, extra in ((20_000, 0), (200_000, 180_000)):
            if extra:
                seed_more(info.db_uri, main_id, extra // 20, 20, 1000)
            with psycopg.connect(info.db_uri) as conn:
                n = conn.execute(
                    "SELECT count(*) FROM messages WHERE user_id = %s", (main_id,)
                ).fetchone()[0]
            row = {"messages": n}
            for name, q in SEARCHES.items():
                # interleaved rounds, so machine noise falls on all three alike
                b, f, a = [], [], []
                for _ in range(args.rounds):
                    b.append(await timed(lambda q=q: before(q), args.iterations, raw=True))
                    f.append(await timed(lambda q=q: fts0030(q), args.iterations, raw=True))
                    a.append(
                        await timed(
                            lambda q=q: cs.search(main_id, q, 20), args.iterations, raw=True
                        )
                    )
                b, f, a = (summary([x for r in v for x in r]) for v in (b, f, a))
                row[name] = {
                    "before": b,
                    "fts_0030": f,
                    "after": a,
                    # the SQL alone (psycopg as `authenticated` with the user's claims: RLS, no
                    # gateway or client), interleaved the same way
                    "in_db": in_db(info.db_uri, main_id, q, args.iterations, args.rounds),
                    "p95_ratio": round(a["p95"] / b["p95"], 3),
                    "hits_after": len(await cs.search(main_id, q, 20)),
                }
            out[str(size)] = row
        await svc.close()
        return {"search_scale": out, "iterations": args.iterations, "rounds": args.rounds}
    finally:
        stack.down()
        stack.pg.reset()


def report_search_scale(r: dict) -> None:
    print(
        "conversation search for one user: sql/0007 (ILIKE), sql/0030 (full-text, invoker) and "
        f"now (sql/0031); {r['rounds']} interleaved rounds x {r['iterations']} timed calls, ms"
    )
    print(
        f"{'messages':>9} {'query':<26}{'0007 p50':>9}{'p95':>8}{'0030 p50':>9}{'p95':>8}"
        f"{'now p50':>9}{'p95':>8}{'hits':>6}   in the database alone: 0007 / 0030 / now p50, p95"
    )
    for row in r["search_scale"].values():
        for name, q in SEARCHES.items():
            x = row[name]
            print(
                f"{row['messages']:>9} {name + ' ' + repr(q):<26}"
                + "".join(
                    f"{x[k]['p50']:>9.2f}{x[k]['p95']:>8.2f}"
                    for k in ("before", "fts_0030", "after")
                )
                + f"{x['hits_after']:>6}   "
                + " / ".join(f"{d['p50']:.1f}, {d['p95']:.1f}" for d in x["in_db"].values())
            )


def report(r: dict) -> None:
    d = r["data"]
    print(
        f"services benchmark: {d['users']} users, {d['conversations']} conversations, "
        f"{d['messages']} messages "
        f"(seeded in {r['seed_seconds']} s); {r['iterations']} timed calls each"
    )
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
    ap.add_argument(
        "--search-scale", action="store_true", help="search at 20k and 200k messages, before/after"
    )
    ap.add_argument(
        "--rounds", type=int, default=3, help="--search-scale: interleaved rounds per query"
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.search_scale:
        out = asyncio.run(run_search_scale(a))
        print(json.dumps(out, indent=2)) if a.json else report_search_scale(out)
    else:
        out = asyncio.run(run(a))
        print(json.dumps(out, indent=2)) if a.json else report(out)
