"""Server time of the app's main interactions, with 1,000 conversations (Streamlit AppTest).

A throwaway stack; one user with 1,000 conversations x 10 messages (seeded by
COPY: setup, not measured). The real app script (`app/main.py`) runs under
`streamlit.testing.v1.AppTest`, i.e. the same code path as a browser rerun,
and each interaction is one script run:
  * the first page after sign-in (the sign-in form submitted → chat page with
    the sidebar list);
  * switching conversations (a sidebar click → that conversation's history);
  * sending a message in offline mode: from the start of the script run to
    the first streamed token (recorded by the page itself in the service
    metrics), the whole interaction (answer stored, page redrawn), and the
    engine's own time to the first token.

    .venv/bin/python bench/app.py [--iterations 30] [--json]

`--start [--starts 2]` instead measures the first answer after a server start,
cold vs warm (bench/app_start.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.figures import stats  # noqa: E402


def seed_conversations(dsn: str, user_id: str, n: int, per: int) -> list[str]:
    from datetime import UTC, datetime, timedelta

    import psycopg

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY conversations (id, user_id, title, message_count, created_at, updated_at) "
            "FROM STDIN"
        ) as cp:
            for i, cid in enumerate(ids):
                cp.write_row(
                    (
                        cid,
                        user_id,
                        f"Question {i} about dosing",
                        per,
                        t0 + timedelta(minutes=i),
                        t0 + timedelta(minutes=i, seconds=per),
                    )
                )
        with cur.copy(
            "COPY messages (id, conversation_id, user_id, role, content, created_at) FROM STDIN"
        ) as cp:
            for i, cid in enumerate(ids):
                for m in range(per):
                    cp.write_row(
                        (
                            str(uuid.uuid4()),
                            cid,
                            user_id,
                            "user" if m % 2 == 0 else "assistant",
                            f"Message {m} of conversation {i}: "
                            "renal dosing of metformin and warfarin.",
                            t0 + timedelta(minutes=i, seconds=m),
                        )
                    )
        cur.execute(
            "UPDATE conversations SET message_count = %s WHERE user_id = %s", (per, user_id)
        )
        conn.commit()
    return ids


def run(args) -> dict:
    from pharmgpt.localbase.stack import LocalStack
    from streamlit.testing.v1 import AppTest

    root = Path(tempfile.mkdtemp(prefix="appb-", dir="/tmp"))
    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    try:
        os.environ.update(info.as_env())
        os.environ.update(
            {
                "PHARMGPT_DATA_DIR": str(root / "app"),
                "PHARMGPT_BCRYPT_ROUNDS": "4",
                "PHARMGPT_SECRETS_FILE": str(root / "none.toml"),
                "PHARMGPT_WARM_START": "0",
            }
        )  # steady-state figures: no loading beside them
        for k in ("GROQ_API_KEY", "OPENAI_BASE_URL", "CHROMA_HOST"):
            os.environ.pop(k, None)
        from pharmgpt.app.context import app_context

        ctx = app_context()
        password = "correct horse battery"
        user = ctx.run(ctx.services.users.create_user("bench-app", password))
        conv_ids = seed_conversations(info.db_uri, user.id, args.conversations, args.messages)
        ctx.services.cache.clear()

        def signed_in_app():
            at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60)
            at.run()
            at.text_input(key="signin_username").input("bench-app")
            at.text_input(key="signin_password").input(password)
            at.button(key="signin_submit").click()
            t = time.perf_counter()
            at.run()
            return at, (time.perf_counter() - t) * 1000

        first_page = []
        for _ in range(args.iterations):
            ctx.services.cache.clear()
            at, ms = signed_in_app()
            assert at.session_state["user"].id == user.id
            first_page.append(ms)

        switch = []
        for i in range(args.iterations):
            ctx.services.cache.clear()
            keys = [b.key for b in at.sidebar.button if b.key and b.key.startswith("conv_open_")]
            target = keys[i % len(keys)]
            at.button(key=target).click()
            t = time.perf_counter()
            at.run()
            switch.append((time.perf_counter() - t) * 1000)

        send = []
        ctx.services.metrics.reset("app.send_to_first_token")
        for i in range(args.iterations):
            at.chat_input(key="chat_input").set_value(f"What is the renal dose of metformin? ({i})")
            t = time.perf_counter()
            at.run()
            send.append((time.perf_counter() - t) * 1000)

        async def first_token(conv_id: str) -> float:
            t = time.perf_counter()
            agen = ctx.rag.engine.answer(user.id, conv_id, "What is the renal dose of metformin?")
            async for ev in agen:
                if ev["type"] == "token":
                    ms = (time.perf_counter() - t) * 1000
                    await agen.aclose()
                    return ms
            return (time.perf_counter() - t) * 1000

        page_first = ctx.services.metrics.samples("app.send_to_first_token")
        engine_first = [ctx.run(first_token(conv_ids[i])) for i in range(args.iterations)]
        ctx.run(ctx.rag.stop_worker())
        ctx.run(ctx.services.close())
        return {
            "conversations": args.conversations,
            "messages_each": args.messages,
            "iterations": args.iterations,
            "first_page_after_sign_in_ms": stats(first_page),
            "switch_conversation_ms": stats(switch),
            "send_message_to_first_token_offline_ms": stats(page_first),
            "send_message_whole_run_offline_ms": stats(send),
            "engine_time_to_first_token_offline_ms": stats(engine_first),
        }
    finally:
        stack.down()
        stack.pg.reset()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--start", action="store_true", help="first answer after a cold vs a warm start"
    )
    ap.add_argument(
        "--starts", type=int, default=2, help="server starts of each kind (with --start)"
    )
    ap.add_argument("--start-child", choices=("cold", "warm"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.start_child or a.start:
        from bench import app_start

        if a.start_child:
            print(json.dumps(app_start.child(a.start_child)))
            sys.exit(0)
        res = app_start.run(a.starts)
        if a.json:
            print(json.dumps(res, indent=2))
        else:
            app_start.report(res)
        sys.exit(0)
    out = run(a)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"app benchmark: {out['conversations']} conversations "
            f"x {out['messages_each']} messages, "
            f"{out['iterations']} runs each (server time of one script run)"
        )
        for k, v in out.items():
            if isinstance(v, dict):
                print(
                    f"  {k:<42} p50 {v['p50']:>7.1f}  p95 {v['p95']:>7.1f}  max {v['max']:>7.1f} ms"
                )
