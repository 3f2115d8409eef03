"""`pharmgpt migrate detect|plan|backup|run|verify|rollback|status`.

Importing this module is cheap (argparse only): pharmgpt/cli.py builds its
parser for every command. Each subcommand imports what it needs when it runs.
Progress bars (rich, with ETA) go to stderr; the final report goes to stdout
as a human summary, or as JSON with --json, and to --report FILE as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KINDS = ("users", "conversations", "documents", "uploads")


def add_commands(sub) -> None:
    m = sub.add_parser(
        "migrate", help="move the legacy file-based data (user_data/) into the database and Chroma"
    )
    ms = m.add_subparsers(dest="migrate_command", required=True)

    def common(p, source: bool = True, tz: bool = True):
        if source:
            p.add_argument(
                "--source", type=Path, required=True, help="the legacy user_data directory"
            )
        if tz:
            p.add_argument(
                "--timezone",
                default=None,
                help="IANA zone of the legacy naive timestamps (default: this machine's)",
            )
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument(
            "--report", type=Path, default=None, help="also write the JSON report to this file"
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = ms.add_parser(
        "detect", help="inventory and validation of a legacy tree, with a time estimate"
    )
    common(p)
    p.add_argument(
        "--deep", action="store_true", help="open every Chroma store and count real chunks"
    )
    p = ms.add_parser("plan", help="what a run would create, skip or refuse")
    common(p)
    p = ms.add_parser(
        "backup", help="tar.gz of the source with a sha256 manifest (never overwrites)"
    )
    common(p, tz=False)
    p.add_argument("--out", type=Path, required=True)
    p = ms.add_parser("run", help="migrate (resumable, idempotent)")
    common(p)
    p.add_argument("--dry-run", action="store_true", help="plan only: nothing is written")
    p.add_argument(
        "--batch-size", type=int, default=500, help="rows per request and per recorded item"
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="KIND",
        help=f"migrate only these kinds ({', '.join(KINDS)}); repeat or comma-separate",
    )
    p.add_argument("--resume", metavar="RUN_ID", default=None, help="continue a run that stopped")
    p.add_argument(
        "--allow-changed-source",
        action="store_true",
        help="resume even though source files changed since the run started",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="even though a run looks alive (recent heartbeat): its process is gone",
    )
    p = ms.add_parser("verify", help="compare source and target; exit 1 on any mismatch")
    common(p)
    p.add_argument("--run-id", default=None)
    p = ms.add_parser("rollback", help="remove exactly what one run wrote")
    common(p, source=False, tz=False)
    p.add_argument("--run-id", required=True)
    p.add_argument(
        "--force", action="store_true", help="even if the run looks alive (it was killed)"
    )
    p = ms.add_parser("status", help="migration runs with their state and counts")
    common(p, source=False, tz=False)
    p.add_argument("--run-id", default=None, help="item counts per kind and state for this run")


class RichProgress:
    """One bar per step, with counts, rate and ETA."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._tasks: dict[str, int] = {}
        self._p = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._p.start()

    def start(self, name: str, total: int | None) -> None:
        if self._p is not None and name not in self._tasks:
            self._tasks[name] = self._p.add_task(name, total=total or 0)

    def advance(self, name: str, n: int = 1) -> None:
        if self._p is not None and name in self._tasks and n:
            task = self._p.tasks[self._tasks[name]]
            if task.total is not None and task.completed + n > task.total:
                self._p.update(self._tasks[name], total=task.completed + n)
            self._p.advance(self._tasks[name], n)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None


def _only(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    out = []
    for v in values:
        out += [x.strip() for x in v.split(",") if x.strip()]
    bad = [x for x in out if x not in KINDS]
    if bad:
        raise SystemExit(f"--only takes {', '.join(KINDS)}; not {', '.join(bad)}")
    return tuple(out)


def _emit(args, report: dict, human: str) -> None:
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print(human)


def _problems_text(problems: list[dict], counts: dict, limit: int = 25) -> list[str]:
    if not problems:
        return ["problems: none"]
    lines = [f"problems: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}"]
    for p in problems[:limit]:
        lines.append(f"  [{p['severity']}] {p['file']}: {p['reason']}")
    if len(problems) > limit:
        lines.append(f"  … and {len(problems) - limit} more (all of them in the JSON report)")
    return lines


def _table(d: dict, indent: str = "  ") -> list[str]:
    width = max((len(str(k)) for k in d), default=0)
    return [f"{indent}{str(k):<{width}}  {v}" for k, v in d.items()]


def run(args, open_services) -> int:
    """`open_services`: the composition root's (pharmgpt/wiring.py), an async context manager
    that yields the services for this command; detect and backup never use it."""
    cmd = args.migrate_command
    progress = RichProgress(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        return _run(args, cmd, progress, open_services)
    except (FileExistsError, FileNotFoundError, NotADirectoryError, ValueError) as e:
        progress.stop()
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        progress.stop()


def _run(args, cmd: str, progress, open_services) -> int:
    if cmd == "detect":
        from .legacy import LegacySource
        from .planner import detect

        r = detect(LegacySource(args.source, args.timezone), deep=args.deep, progress=progress)
        progress.stop()
        human = "\n".join(
            [
                f"source {r['source']} (times read as {r['timezone']})",
                "counts:",
                *_table(r["counts"]),
                f"estimated run time: {r['estimate_s']:.0f} s",
                *_renames_text(r["renamed"]),
                *_damage_text(r["damaged_files"]),
                *_problems_text(r["problems"], r["problem_counts"]),
            ]
        )
        _emit(args, r, human)
        return 0
    if cmd == "backup":
        from .backup import backup

        r = backup(args.source, args.out, progress=progress)
        progress.stop()
        _emit(
            args,
            r,
            f"backup written: {r['file']} ({r['total_files']} files, {r['total_bytes']:,} bytes, "
            f"sha256 {r['sha256']})",
        )
        return 0
    import asyncio

    return asyncio.run(_with_services(args, progress, open_services))


async def _with_services(args, progress, open_services) -> int:
    async with open_services(announce=sys.stderr) as services:  # stdout may be the JSON report
        return await _database_command(args, services, progress)


async def _database_command(args, services, progress) -> int:
    cmd = args.migrate_command
    if cmd == "plan" or (cmd == "run" and args.dry_run):
        from .legacy import LegacySource
        from .planner import plan

        r = await plan(LegacySource(args.source, args.timezone), services, progress=progress)
        progress.stop()
        head = "dry run: nothing was written. " if cmd == "run" else ""
        lines = [f"{head}plan for {r['source']}:"]
        for kind, v in r["plan"].items():
            lines.append(
                f"  {kind:<14} create {v['create']:>8}   already there {v['exists']:>8}   "
                f"conflict {v['conflict']:>6}"
            )
        for c in r["conflicts"][:20]:
            lines.append(f"  conflict: {c['kind']} {c['key']}: {c['reason']}")
        lines += _problems_text(r["problems"], r["problem_counts"])
        _emit(args, r, "\n".join(lines))
        return 0
    if cmd == "run":
        from .migrator import MigrationError, Migrator

        m = Migrator(
            services,
            args.source,
            batch_size=args.batch_size,
            only=_only(args.only),
            timezone=args.timezone,
            progress=progress,
        )
        try:
            r = await m.run(
                resume=args.resume, allow_changed_source=args.allow_changed_source, force=args.force
            )
        except MigrationError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as e:
            progress.stop()
            report = getattr(m, "last_report", None)
            if report is not None:
                _emit(args, report, _run_summary(report))
            print(
                f"error: the run stopped: {e}\nresume it with: pharmgpt migrate run --source "
                f"{args.source} --resume {m.run_id}",
                file=sys.stderr,
            )
            return 1
        progress.stop()
        _emit(args, r, _run_summary(r))
        return 0
    if cmd == "verify":
        from .verify import verify

        r = await verify(
            services, args.source, run_id=args.run_id, timezone=args.timezone, progress=progress
        )
        progress.stop()
        lines = [f"verify {r['source']}: {'OK' if r['ok'] else 'MISMATCH'}", *_table(r["counts"])]
        for mm in r["mismatches"][:30]:
            where = " ".join(
                f"{k}={v}" for k, v in mm.items() if k not in ("what", "expected", "found")
            )
            lines.append(
                f"  mismatch {where}: {mm['what']} "
                f"(expected {mm['expected']!r}, found {mm['found']!r})"
            )
        if r["skipped"]:
            lines.append(
                f"  {len(r['skipped'])} item(s) deliberately not migrated (see the JSON report)"
            )
        lines += _renames_text(r.get("renamed", []))
        _emit(args, r, "\n".join(lines))
        return 0 if r["ok"] else 1
    if cmd == "rollback":
        from .rollback import RollbackError, rollback

        try:
            r = await rollback(services, args.run_id, force=args.force)
        except RollbackError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        lines = [
            f"run {r['run_id']} rolled back in {r['seconds']} s; removed:",
            *_table(r["removed"]),
        ]
        lines += [f"  kept {k['kind']} {k['id']}: {k['reason']}" for k in r["kept"]]
        _emit(args, r, "\n".join(lines))
        return 0
    if cmd == "status":
        from .state import STALE_AFTER_S, Target, is_stale

        t = Target(services)
        if args.run_id:
            run_row = await t.get_run(args.run_id)
            if run_row is None:
                print(f"error: no migration run {args.run_id}", file=sys.stderr)
                return 2
            run_row["stale"] = is_stale(run_row)
            r = {"run": run_row, "items": await t.count_items(args.run_id)}
            lines = [f"run {run_row['id']}: {_state_text(run_row)} ({run_row['source']})"]
            for kind, states in sorted(r["items"].items()):
                lines.append(
                    f"  {kind:<14} " + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                )
            lines += _resume_hint([run_row])
            _emit(args, r, "\n".join(lines))
            return 0
        runs = await t.runs()
        for x in runs:
            x["stale"] = is_stale(x)
        _emit(args, {"runs": runs, "stale_after_s": STALE_AFTER_S}, "\n".join(_status_lines(runs)))
        return 0
    return 2


def _state_text(run: dict) -> str:
    """`running`, or `stale (no heartbeat since …)` for a run whose process stopped beating."""
    if run.get("stale"):
        return f"stale (no heartbeat since {str(run['heartbeat_at'])[:19]})"
    return run["state"]


def _resume_hint(runs: list[dict]) -> list[str]:
    return [
        f"run {x['id']} stopped without finishing (killed?); resume it with: pharmgpt migrate "
        f"run --source {x['source']} --resume {x['id']}"
        for x in runs
        if x.get("stale")
    ]


def _status_lines(runs: list[dict]) -> list[str]:
    if not runs:
        return ["no migration runs"]
    rows = [(x["id"], _state_text(x), str(x["started_at"])[:25], x["counts"] or {}) for x in runs]
    width = max(11, *(len(s) for _, s, _, _ in rows))
    lines = [f"{'run':<36}  {'state':<{width}}  {'started':<25}  counts"]
    for run_id, state, started, c in rows:
        short = ", ".join(
            f"{k.removesuffix('_written')} {v}" for k, v in c.items() if k.endswith("_written")
        )
        lines.append(f"{run_id}  {state:<{width}}  {started:<25}  {short}")
    return lines + _resume_hint(runs)


def _renames_text(renamed: list[dict], limit: int = 25) -> list[str]:
    lines = [
        f"  renamed: {x['legacy_username']!r} -> {x['username']!r} (legacy id {x['legacy_id']})"
        for x in renamed[:limit]
    ]
    if len(renamed) > limit:
        lines.append(f"  … and {len(renamed) - limit} more renamed (see the JSON report)")
    return lines


def _damage_text(damaged: list[dict]) -> list[str]:
    return [
        f"  damaged: {d['file']}: {d['recovered']} recovered, {d['lost']} lost"
        + (
            f" ({', '.join(d['lost_keys'][:5])}{', …' if len(d['lost_keys']) > 5 else ''})"
            if d["lost_keys"]
            else ""
        )
        for d in damaged
    ]


def _run_summary(r: dict) -> str:
    c = r["counts"]
    lines = [
        f"run {r['run_id']}: {r['state']} in {r['seconds']:.1f} s"
        + (" (resumed)" if r.get("resumed") else ""),
        "written:",
    ]
    for kind in ("users", "conversations", "messages", "documents", "chunks", "uploads"):
        extra = []
        for suffix in ("existing", "conflict", "skipped", "failed", "deleted_since"):
            if c.get(f"{kind}_{suffix}"):
                extra.append(f"{c[f'{kind}_{suffix}']} {suffix.replace('_', ' ')}")
        rate = r["rates_per_s"].get(kind)
        lines.append(
            f"  {kind:<14} {c.get(f'{kind}_written', 0):>8}  ({rate}/s)"
            + (f"  — {', '.join(extra)}" if extra else "")
        )
    if c.get("chunks_reembedded"):
        lines.append(f"  re-embedded chunks: {c['chunks_reembedded']}")
    if c.get("sessions_not_migrated"):
        lines.append(f"  sessions not migrated (users sign in again): {c['sessions_not_migrated']}")
    lines += _renames_text(r.get("renamed", []))
    lines += _damage_text(r.get("damaged_files", []))
    lines += _problems_text(r["problems"], r["problem_counts"])
    return "\n".join(lines)
