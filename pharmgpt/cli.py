"""The `pharmgpt` command. Subcommands import what they need when they run, and build what they
use through pharmgpt/wiring.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from pharmgpt.localbase.cli import add_commands as add_local

    parser = argparse.ArgumentParser(
        prog="pharmgpt", description="PharmGPT: grounded answers for pharmacists"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="start the local stack (unless SUPABASE_URL is set) and the app"
    )
    run.add_argument("--port", type=int, default=8501)
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingestion worker processes to supervise (0: they run elsewhere, e.g. other hosts)",
    )
    run.add_argument(
        "--in-app-worker",
        action="store_true",
        help="run the worker inside the app with the embedded Chroma store (no Chroma server port)",
    )
    doctor = sub.add_parser(
        "doctor", help="print the configuration (secrets masked) and check each part"
    )
    doctor.add_argument("--json", action="store_true")
    worker = sub.add_parser(
        "worker", help="run an ingestion worker (the queue is shared with the app)"
    )
    worker.add_argument(
        "--once", action="store_true", help="process the queue until empty, then exit"
    )
    sub.add_parser(
        "reconcile",
        help="remove chunks whose document no longer exists, and re-index "
        "documents indexed by an older version (drug identity, sections)",
    )
    sub.add_parser(
        "reindex", help="re-embed collections built by another embedder (PHARMGPT_EMBEDDER)"
    )
    ev = sub.add_parser("eval", help="retrieval (scifact) and answer (pharm) evaluation")
    ev.add_argument("dataset", choices=["scifact", "pharm"])
    ev.add_argument(
        "--questions",
        type=Path,
        default=None,
        help="pharm: a JSONL file of questions (default: shared/data/pharm-qa/dev.jsonl)",
    )
    ev.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="pharm: the folder of documents to upload (default: shared/data/fda-labels)",
    )
    ev.add_argument("--split", default="test", choices=["test", "train"])
    ev.add_argument("--data-dir", type=Path, default=None)
    ev.add_argument(
        "--no-tune", action="store_true", help="equal RRF weights instead of tuning on train"
    )
    ev.add_argument("--json", action="store_true")
    ev.add_argument(
        "--ablate",
        action="store_true",
        help="pharm: also score with each answer rule switched off, one at a time",
    )
    ev.add_argument(
        "--embedder",
        choices=["onnx-int8", "torch"],
        default=None,
        help="scifact: the embedder to evaluate (default: PHARMGPT_EMBEDDER)",
    )
    ev.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep corpus embeddings here between runs (e.g. .pharmgpt/cache)",
    )
    from pharmgpt.admin_command import add_commands as add_admin

    add_admin(sub)
    from pharmgpt.migration.cli import add_commands as add_migrate  # argparse only: cheap to import

    add_migrate(sub)
    add_local(sub)
    from pharmgpt.keys_command import add_commands as add_keys

    add_keys(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pharmgpt.localbase.files import private_umask

    private_umask()  # every command: what it creates under the data directory is 0700/0600
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from pharmgpt.launcher import run_app

        return run_app(port=args.port, workers=args.workers, in_app_worker=args.in_app_worker)
    if args.command in ("worker", "reconcile", "reindex"):
        from pharmgpt.rag_commands import run_reconcile, run_reindex, run_worker

        if args.command == "reindex":
            return run_reindex()
        return run_worker(once=args.once) if args.command == "worker" else run_reconcile()
    if args.command == "eval":
        from pharmgpt.eval_command import run as run_eval

        return run_eval(args)
    if args.command == "admin":
        from pharmgpt.admin_command import run as run_admin

        return run_admin(args)
    if args.command == "migrate":
        from pharmgpt.migration.cli import run as run_migrate
        from pharmgpt.wiring import open_services

        return run_migrate(args, open_services)
    if args.command == "doctor":
        from pharmgpt.doctor import run_doctor

        return run_doctor(as_json=args.json)
    if args.command == "keys":
        from pharmgpt.keys_command import run as run_keys

        return run_keys(args)
    if args.command in ("local", "db"):
        from pharmgpt.localbase.cli import run
        from pharmgpt.wiring import default_data_dir

        return run(args, default_data_dir=default_data_dir)
    return 2


if __name__ == "__main__":
    sys.exit(main())
