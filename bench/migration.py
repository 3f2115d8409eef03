"""Legacy migration throughput and memory (issue #6).

Generates a legacy `user_data/` tree the way the old app wrote it (md5 ids,
sha256+salt hashes, conversations.json per user, one real Chroma store per
conversation with documents, random unit 384-d vectors), starts a throwaway
local stack (durable Postgres settings, as in production), then runs
`pharmgpt migrate run` in a child process — the real entry point — and
reports users/s, conversations/s, messages/s, chunks/s, and for every phase
(run, verify, a second run, rollback) its time and its own peak memory (the
max RSS of that child process alone, from wait4). Goal at full scale (1,000
users, 10,000 conversations, 200,000 messages, 50,000 chunks): the run under
10 minutes on 2 cores, every phase under 1 GB, no phase's peak growing with
the number of users (compare --scale 0.2 with --scale 1).

    .venv/bin/python bench/migration.py --verify --rollback            # full scale, every phase
    .venv/bin/python bench/migration.py --scale 0.1                     # a tenth of everything
    .venv/bin/python bench/migration.py --users 50 --conversations 200 --messages 2000 --chunks 1000
    --code DIR runs the migrate commands from another checkout (before/after on one tree);
    --json for raw figures
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pharmgpt.localbase.stack import LocalStack  # noqa: E402

from tests.fixtures.legacy import (  # noqa: E402
    DRUG_TEXT,
    dump,
    legacy_hash,
    md5_id,
    split_chunks,
    write_store,
)

CHUNKS_PER_DOC = 20
DOCS_PER_STORE = 5
DRUGS = list(DRUG_TEXT)


def generate(
    root: Path, users: int, conversations: int, messages: int, chunks: int, seed: int = 1
) -> dict:
    """Write the tree; returns what it holds. Conversations and messages are spread evenly;
    documents of CHUNKS_PER_DOC chunks go DOCS_PER_STORE to a store, one store per
    conversation, in the first conversations of the first users."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 3, 1, 9, 0, 0)
    users_json, uploads = {}, {}
    conv_per_user = [
        conversations // users + (1 if i < conversations % users else 0) for i in range(users)
    ]
    msg_per_conv = messages // max(1, conversations)
    extra_msgs = messages - msg_per_conv * conversations
    docs_total = chunks // CHUNKS_PER_DOC
    stores_total = -(-docs_total // DOCS_PER_STORE)
    written = {
        "users": 0,
        "conversations": 0,
        "messages": 0,
        "documents": 0,
        "chunks": 0,
        "stores": 0,
    }
    store_slots = []  # (user index, conversation index) that get a store
    for i in range(users):
        if len(store_slots) >= stores_total:
            break
        for j in range(min(conv_per_user[i], max(1, -(-stores_total // users)))):
            if len(store_slots) < stores_total:
                store_slots.append((i, j))
    slot_set = set(store_slots)
    docs_left = docs_total
    clock = t0
    for i in range(users):
        name = f"bench-user-{i:05d}"
        uid = md5_id(name)
        salt = secrets.token_hex(32)
        users_json[name] = {
            "password_hash": legacy_hash(f"pw-{i}", salt),
            "salt": salt,
            "created_at": (t0 + timedelta(minutes=i)).isoformat(),
            "user_id": uid,
        }
        conv_dir = root / f"conversations_{uid}"
        rag_dir = root / f"rag_{uid}"
        conv_dir.mkdir(parents=True)
        rag_dir.mkdir()
        convs = {}
        for j in range(conv_per_user[i]):
            cid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            n = msg_per_conv + (1 if extra_msgs > 0 else 0)
            extra_msgs -= 1
            drug = DRUGS[(i + j) % len(DRUGS)]
            clock += timedelta(seconds=90)
            created = clock
            msgs = []
            for k in range(n):
                clock += timedelta(seconds=4)
                text = (
                    f"What is the {drug} dose for patient {k}?"
                    if k % 2 == 0
                    else DRUG_TEXT[drug][: 120 + (k * 37) % 180]
                )
                msgs.append(
                    {
                        "role": "user" if k % 2 == 0 else "assistant",
                        "content": text,
                        "timestamp": clock.isoformat(),
                    }
                )
            title = msgs[0]["content"][:50] + "..." if msgs else f"New Chat {j + 1}"
            convs[cid] = {
                "title": title,
                "created_at": created.isoformat(),
                "model": "meta-llama/llama-4-maverick-17b-128e-instruct",
                "messages": msgs,
            }
            written["conversations"] += 1
            written["messages"] += n
            if (i, j) in slot_set and docs_left > 0:
                folder = rag_dir / f"conversation_{cid}"
                folder.mkdir()
                docs, meta = [], {}
                for d in range(min(DOCS_PER_STORE, docs_left)):
                    fname = f"{drug}-reference-{d}.pdf"
                    body = " ".join(DRUG_TEXT[DRUGS[(d + k) % len(DRUGS)]] for k in range(100))
                    parts = split_chunks(body)[:CHUNKS_PER_DOC]
                    h = hashlib.md5(f"{cid}_{fname}_{body}".encode()).hexdigest()
                    docs.append(
                        {
                            "doc_hash": h,
                            "filename": fname,
                            "file_type": "application/pdf",
                            "chunks": parts,
                        }
                    )
                    meta[h] = {
                        "filename": fname,
                        "file_type": "application/pdf",
                        "chunk_count": len(parts),
                        "added_at": created.isoformat(),
                        "conversation_id": cid,
                    }
                    uploads.setdefault(uid, []).append(
                        {
                            "filename": fname,
                            "file_size": 10_000 + d,
                            "timestamp": created.isoformat(),
                        }
                    )
                    written["documents"] += 1
                    written["chunks"] += len(parts)
                    docs_left -= 1
                dump(folder / "documents_metadata.json", meta)
                write_store(folder, cid, docs, rng)
                written["stores"] += 1
        dump(conv_dir / "conversations.json", convs)
        written["users"] += 1
    dump(root / "users.json", users_json)
    dump(root / "uploads.json", uploads)
    dump(root / "sessions.json", {})
    written["uploads"] = sum(len(v) for v in uploads.values())
    return written


def phase(argv: list[str], env: dict, cwd: Path) -> dict:
    """One `pharmgpt migrate ...` child: wall time, exit code, output, and the peak RSS of that
    child alone (wait4's rusage; RUSAGE_CHILDREN would give the max over every child so far)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "pharmgpt", "migrate", *argv],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "seconds": round(time.perf_counter() - t, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "returncode": p.returncode,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every count below")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--chunks", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--verify", action="store_true", help="also run `pharmgpt migrate verify`")
    ap.add_argument(
        "--rollback", action="store_true", help="end with `pharmgpt migrate rollback` of the run"
    )
    ap.add_argument(
        "--code", type=Path, default=ROOT, help="checkout whose `pharmgpt migrate` is measured"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = {
        k: max(1, int(getattr(args, k) * args.scale))
        for k in ("users", "conversations", "messages", "chunks")
    }
    code = args.code.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="pgmig-", dir="/tmp"))
    stack = LocalStack(tmp / "stack", gateway_port=0)
    info = stack.up()
    out: dict = {"requested": n, "code": str(code), "phases": {}}
    phases = out["phases"]
    try:
        t = time.perf_counter()
        out["tree"] = generate(tmp / "user_data", **n)
        out["generate_s"] = round(time.perf_counter() - t, 1)
        print(f"generated {out['tree']} in {out['generate_s']} s", file=sys.stderr)
        env = {
            **os.environ,
            **info.as_env(),
            "PYTHONPATH": str(code),
            "PHARMGPT_DATA_DIR": str(tmp / "app"),
            "PHARMGPT_SECRETS_FILE": str(tmp / "none.toml"),
        }
        src = ["--source", str(tmp / "user_data")]
        quiet = ["--json", "--no-progress"]
        run = phase(
            ["run", *src, "--batch-size", str(args.batch_size), *quiet, "--report", str(tmp / "r")],
            env,
            code,
        )
        if run["returncode"] != 0:
            print(run["stderr"][-4000:], file=sys.stderr)
            return 1
        report = json.loads((tmp / "r").read_text())
        c, secs = report["counts"], report["seconds"]
        phases["run"] = {
            "seconds": run["seconds"],
            "migration_s": secs,
            "peak_rss_mb": run["peak_rss_mb"],
            "counts": {
                k: c.get(f"{k}_written", 0)
                for k in ("users", "conversations", "messages", "documents", "chunks", "uploads")
            },
            "per_s": {
                k: round(c.get(f"{k}_written", 0) / secs, 1)
                for k in ("users", "conversations", "messages", "chunks")
            },
        }
        if args.verify:
            v = phase(["verify", *src, *quiet], env, code)
            phases["verify"] = {
                "seconds": v["seconds"],
                "peak_rss_mb": v["peak_rss_mb"],
                "ok": v["returncode"] == 0,
            }
        again = phase(["run", *src, "--batch-size", str(args.batch_size), *quiet], env, code)
        phases["second run"] = {
            "seconds": again["seconds"],
            "peak_rss_mb": again["peak_rss_mb"],
            "ok": again["returncode"] == 0,
        }
        if args.rollback:
            rb = phase(["rollback", "--run-id", report["run_id"], "--json"], env, code)
            removed = json.loads(rb["stdout"])["removed"] if rb["returncode"] == 0 else {}
            phases["rollback"] = {
                "seconds": rb["seconds"],
                "peak_rss_mb": rb["peak_rss_mb"],
                "ok": rb["returncode"] == 0 and removed.get("users") == out["tree"]["users"],
                "removed": removed,
            }
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r = phases["run"]
    print(
        f"migration benchmark ({code}): {out['tree']['users']} users, "
        f"{out['tree']['conversations']} conversations, "
        f"{out['tree']['messages']} messages, {out['tree']['chunks']} chunks in "
        f"{out['tree']['stores']} Chroma stores (generated in {out['generate_s']} s)"
    )
    print(f"  migration (inside the run)             {r['migration_s']:>8.1f} s")
    for k, v in r["per_s"].items():
        print(f"  {k + '/s':<38} {v:>8.1f}")
    print(f"  {'phase':<14} {'time (s)':>9} {'peak RSS (MB)':>14} {'peak / run':>11}  ok")
    for name, ph in phases.items():
        ratio = ph["peak_rss_mb"] / r["peak_rss_mb"]
        ok = "" if "ok" not in ph else ("yes" if ph["ok"] else "NO")
        print(
            f"  {name:<14} {ph['seconds']:>9.1f} {ph['peak_rss_mb']:>14.1f} {ratio:>10.2f}x  {ok}"
        )
    worst = max(ph["peak_rss_mb"] for ph in phases.values())
    print(f"  highest peak {worst:.0f} MB: {'under' if worst < 1024 else 'OVER'} the 1 GB goal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
