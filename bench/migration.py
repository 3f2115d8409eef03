"""Legacy migration throughput and memory (issue #6).

Generates a legacy `user_data/` tree the way the old app wrote it (md5 ids,
sha256+salt hashes, conversations.json per user, one real Chroma store per
conversation with documents, random unit 384-d vectors), starts a throwaway
local stack (durable Postgres settings, as in production), then runs
`pharmgpt migrate run` in a child process — the real entry point — and
reports users/s, conversations/s, messages/s, chunks/s, the child's peak
memory (getrusage of the child) and the total time. Goal at full scale
(1,000 users, 10,000 conversations, 200,000 messages, 50,000 chunks): under
10 minutes on 2 cores, under 1 GB peak.

    .venv/bin/python bench/migration.py                  # full scale
    .venv/bin/python bench/migration.py --scale 0.1      # a tenth of everything
    .venv/bin/python bench/migration.py --users 50 --conversations 200 --messages 2000 --chunks 1000
    add --verify to time `pharmgpt migrate verify` as well, --json for raw figures
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
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
from localbase.stack import LocalStack  # noqa: E402
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every count below")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--conversations", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--chunks", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--verify", action="store_true", help="also time `pharmgpt migrate verify`")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = {
        k: max(1, int(getattr(args, k) * args.scale))
        for k in ("users", "conversations", "messages", "chunks")
    }
    tmp = Path(tempfile.mkdtemp(prefix="pgmig-", dir="/tmp"))
    stack = LocalStack(tmp / "stack", gateway_port=0)
    info = stack.up()
    out: dict = {"requested": n}
    try:
        t = time.perf_counter()
        out["tree"] = generate(tmp / "user_data", **n)
        out["generate_s"] = round(time.perf_counter() - t, 1)
        print(f"generated {out['tree']} in {out['generate_s']} s", file=sys.stderr)
        env = {
            **os.environ,
            **info.as_env(),
            "PHARMGPT_DATA_DIR": str(tmp / "app"),
            "PHARMGPT_SECRETS_FILE": str(tmp / "none.toml"),
        }
        cmd = [
            sys.executable,
            "-m",
            "services.cli",
            "migrate",
            "run",
            "--source",
            str(tmp / "user_data"),
            "--batch-size",
            str(args.batch_size),
            "--json",
            "--no-progress",
            "--report",
            str(tmp / "run.json"),
        ]
        t = time.perf_counter()
        p = subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        total = time.perf_counter() - t
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if p.returncode != 0:
            print(p.stderr[-4000:], file=sys.stderr)
            return 1
        report = json.loads((tmp / "run.json").read_text())
        c = report["counts"]
        secs = report["seconds"]
        out["run"] = {
            "total_s": round(total, 1),
            "migration_s": secs,
            "peak_rss_mb": round(peak_kb / 1024, 1),
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
            t = time.perf_counter()
            v = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "migrate",
                    "verify",
                    "--source",
                    str(tmp / "user_data"),
                    "--json",
                    "--no-progress",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            out["verify"] = {
                "seconds": round(time.perf_counter() - t, 1),
                "ok": v.returncode == 0,
                "peak_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
                ),
            }
        # a second run over the same tree: everything is already there
        t = time.perf_counter()
        p2 = subprocess.run(
            cmd[:-2] + ["--report", str(tmp / "run2.json")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        out["rerun_s"] = round(time.perf_counter() - t, 1) if p2.returncode == 0 else None
    finally:
        stack.down()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    r = out["run"]
    print(
        f"migration benchmark: {out['tree']['users']} users, "
        f"{out['tree']['conversations']} conversations, "
        f"{out['tree']['messages']} messages, {out['tree']['chunks']} chunks in "
        f"{out['tree']['stores']} "
        f"Chroma stores (generated in {out['generate_s']} s)"
    )
    print(f"  total (child process, start to exit)  {r['total_s']:>8.1f} s")
    print(f"  migration (inside the run)             {r['migration_s']:>8.1f} s")
    for k, v in r["per_s"].items():
        print(f"  {k + '/s':<38} {v:>8.1f}")
    print(f"  peak memory (child, max RSS)           {r['peak_rss_mb']:>8.1f} MB")
    if "verify" in out:
        print(
            f"  verify                                 {out['verify']['seconds']:>8.1f} s "
            f"({'OK' if out['verify']['ok'] else 'MISMATCH'})"
        )
    print(f"  second run (nothing to write)          {out['rerun_s']:>8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
