"""The `pharmgpt` command. Subcommands import what they need when they run."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from localbase.cli import add_commands as add_local

    parser = argparse.ArgumentParser(prog="pharmgpt", description="PharmGPT: grounded answers for pharmacists")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the local stack (unless SUPABASE_URL is set) and the app")
    run.add_argument("--port", type=int, default=8501)
    doctor = sub.add_parser("doctor", help="print the configuration (secrets masked) and check each part")
    doctor.add_argument("--json", action="store_true")
    add_local(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from services.launcher import run_app
        return run_app(port=args.port)
    if args.command == "doctor":
        from services.doctor import run_doctor
        return run_doctor(as_json=args.json)
    if args.command in ("local", "db"):
        from localbase.cli import run
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
