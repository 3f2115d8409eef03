"""The first answer after a restart, cold vs warm start (issue 13), for `bench/app.py --start`.

A throwaway stack and data directory, one user with one ready document (set
up once, not measured). Then, per start, a fresh Python process runs the real
app script under AppTest: it builds the app context as a server would, signs
in, and sends a question; the page records the server time from the start of
that script run to the first streamed token (`app.send_to_first_token`). A
second question in the same process is the warm baseline.
  * cold: `PHARMGPT_WARM_START=0`, as before: the embedder, Chroma and BM25
    load on the first question;
  * warm: the default: they load in the background when the server starts
    (what `pharmgpt run` does through app/warm.py), while the user signs in;
    the process waits for the warm-up before asking, as a user who takes that
    long to sign in would. How long the warm-up took is reported too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench-start", "correct horse battery"
DOC = (
    b"# Atorvastatin tablets\n\n## Dosage and administration\n\nThe recommended starting dose of "
    b"atorvastatin is 10 or 20 mg once daily; the dosage range is 10 to 80 mg once daily.\n\n"
    b"## Contraindications\n\nActive liver disease; pregnancy; breastfeeding.\n"
)
QUESTIONS = (
    "What is the starting dose of atorvastatin?",
    "What is the maximum dose of atorvastatin?",
)


def _setup(root: Path):
    from pharmgpt.localbase.stack import LocalStack

    stack = LocalStack(root / "data", gateway_port=0)
    info = stack.up()
    env = {
        **info.as_env(),
        "PHARMGPT_DATA_DIR": str(root / "app"),
        "PHARMGPT_BCRYPT_ROUNDS": "4",
        "PHARMGPT_SECRETS_FILE": str(root / "none.toml"),
    }
    os.environ.update(env)
    for k in ("GROQ_API_KEY", "OPENAI_BASE_URL", "CHROMA_HOST"):
        os.environ.pop(k, None)
    from pharmgpt.app.context import app_context

    ctx = app_context()
    user = ctx.run(ctx.services.users.create_user(USER, PASSWORD))
    doc = ctx.run(ctx.services.documents.register_upload(user.id, "atorvastatin.md", DOC))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        doc = ctx.run(ctx.services.documents.get_document(user.id, doc.id))
        if doc.status in ("ready", "failed"):
            break
        ctx.refresh_documents(user.id)
        time.sleep(0.5)
    if doc.status != "ready":
        raise RuntimeError(
            f"the benchmark document did not become ready: {doc.status} {doc.processing_error}"
        )
    ctx.run(ctx.rag.stop_worker())
    ctx.rag.store.close()
    ctx.run(ctx.services.close())
    return env, stack


def child(mode: str) -> dict:
    """One server start: the first answer, then a second one (warm)."""
    started = time.perf_counter()
    from pharmgpt.app.context import app_context
    from streamlit.testing.v1 import AppTest

    ctx = app_context()
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.run()
    at.text_input(key="signin_username").input(USER)
    at.text_input(key="signin_password").input(PASSWORD)
    at.button(key="signin_submit").click()
    at.run()
    signed_in_s = time.perf_counter() - started
    warm_s = None
    if mode == "warm":
        ctx.run(ctx.rag.warmup.wait(), timeout=600)
        warm_s = ctx.rag.warmup.seconds
        time.sleep(0.5)  # the per-user preload started at sign-in
    firsts = []
    m = ctx.services.metrics
    for q in QUESTIONS:
        m.reset("app.send_to_first_token")
        at.chat_input(key="chat_input").set_value(q)
        at.run()
        samples = m.samples("app.send_to_first_token")
        if not samples:
            raise RuntimeError(f"no answer was streamed for {q!r}: {[e.value for e in at.error]}")
        firsts.append(samples[-1])
    ctx.run(ctx.rag.stop_worker())
    ctx.run(ctx.services.close())
    return {
        "mode": mode,
        "first_answer_ms": round(firsts[0], 1),
        "second_answer_ms": round(firsts[1], 1),
        "signed_in_after_s": round(signed_in_s, 1),
        "warm_up_s": None if warm_s is None else round(warm_s, 1),
    }


def run(starts: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="appstart-", dir="/tmp"))
    env, stack = _setup(root)
    try:
        out: dict[str, list[dict]] = {"cold": [], "warm": []}
        for _ in range(starts):
            for mode in ("cold", "warm"):
                child_env = {
                    **os.environ,
                    **env,
                    "PHARMGPT_WARM_START": "1" if mode == "warm" else "0",
                }
                r = subprocess.run(
                    [sys.executable, str(ROOT / "bench" / "app.py"), "--start-child", mode],
                    cwd=ROOT,
                    env=child_env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                if r.returncode != 0:
                    raise RuntimeError(f"{mode} start failed:\n{r.stderr[-3000:]}")
                out[mode].append(json.loads(r.stdout.strip().splitlines()[-1]))
        return out
    finally:
        stack.down()
        stack.pg.reset()


def report(out: dict) -> None:
    print(
        "first answer after a server start "
        "(server time, script run start -> first token, offline mode)"
    )
    for mode, runs in out.items():
        for r in runs:
            extra = f", warm-up took {r['warm_up_s']} s" if r["warm_up_s"] is not None else ""
            print(
                f"  {mode:<5} first {r['first_answer_ms']:>8.1f} ms"
                f"   then {r['second_answer_ms']:>7.1f} ms"
                f"   (signed in {r['signed_in_after_s']} s after start{extra})"
            )
