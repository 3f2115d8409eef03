"""`pharmgpt local ...`: run and inspect the local Supabase stand-in."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

DataDirDefault = Callable[[], tuple[Path, str]]


def _data_dir(args: argparse.Namespace, default: DataDirDefault | None) -> Path:
    """--data-dir, else the product's one default (`default`: the directory and why, given by the
    composition root); said on stderr (stdout may be JSON) so it is never a guess."""
    if args.data_dir:
        chosen, how = Path(args.data_dir).expanduser().resolve(), "--data-dir"
    elif default is not None:
        chosen, how = default()
    else:
        raise SystemExit("give --data-dir (the directory of the local stack)")
    print(
        f"data dir: {chosen} ({how}); database: embedded Postgres in {chosen / 'pgdata'}",
        file=sys.stderr,
    )
    return chosen


def add_commands(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="the embedded Postgres + PostgREST-compatible gateway")
    lsub = local.add_subparsers(dest="local_cmd", required=True)
    for name, help_ in [
        ("start", "start Postgres, apply sql/, start the gateway"),
        ("stop", "stop the gateway and Postgres"),
        ("status", "is it running, and where"),
        ("reset", "stop and delete all local data"),
        ("keys", "print the local URL, API keys and signing key (secrets: keep them local)"),
    ]:
        p = lsub.add_parser(name, help=help_)
        p.add_argument("--data-dir", type=Path, default=None)
        if name == "reset":
            p.add_argument("--yes", action="store_true", help="do not ask")
    g = lsub.add_parser(
        "gateway", help="serve /rest/v1 for any database, configured like PostgREST"
    )
    g.add_argument("--db-uri", default=os.environ.get("PHARMGPT_GATEWAY_DB_URI"))
    g.add_argument("--port", type=int, default=3000)
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument(
        "--jwt-secret",
        default=os.environ.get("PHARMGPT_GATEWAY_JWT_SECRET"),
        help="a legacy HS256 secret (tokens without kid; JWT apikeys)",
    )
    g.add_argument(
        "--keys-file",
        type=Path,
        default=os.environ.get("PHARMGPT_GATEWAY_KEYS_FILE"),
        help="JSON: {jwks, api_keys, jwt_secret, legacy_api_keys} (localbase writes one)",
    )
    g.add_argument("--anon-role", default="anon")
    g.add_argument("--schemas", default="public")
    g.add_argument("--jwt-aud", default="authenticated")
    g.add_argument("--no-apikey", action="store_true", help="do not require the apikey header")
    _limit_args(g)
    m = sub.add_parser("db", help="schema migrations")
    msub = m.add_subparsers(dest="db_cmd", required=True)
    mig = msub.add_parser("migrate", help="apply pending sql/ files to a database")
    mig.add_argument("--db-uri", default=os.environ.get("DATABASE_URL"))
    mig.add_argument("--data-dir", type=Path, default=None)
    mig.add_argument(
        "--baseline",
        action="store_true",
        help="record sql/ as applied without running it (for a schema applied by hand "
        "with psql); checks that its tables and functions exist first",
    )
    mig.add_argument(
        "--through",
        metavar="NNNN",
        default=None,
        help="with --baseline: record only the files up to this number",
    )


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(f"PHARMGPT_GATEWAY_{name}")
    return int(raw) if raw not in (None, "") else default


def _limit_args(g: argparse.ArgumentParser) -> None:
    """The gateway's limits (docs/security.md "Gateway limits"); each also reads
    PHARMGPT_GATEWAY_<NAME>."""
    from .gateway import GatewayConfig

    d = GatewayConfig(db_uri="", jwt_secret="")
    g.add_argument(
        "--max-rows",
        type=int,
        default=_env_int("MAX_ROWS", d.max_rows),
        help="cap rows per response and per embed, like db-max-rows (default: none)",
    )
    g.add_argument(
        "--max-response-bytes",
        type=int,
        default=_env_int("MAX_RESPONSE_BYTES", d.max_response_bytes),
    )
    g.add_argument(
        "--max-query-bytes", type=int, default=_env_int("MAX_QUERY_BYTES", d.max_query_bytes)
    )
    g.add_argument("--max-filters", type=int, default=_env_int("MAX_FILTERS", d.max_filters))
    g.add_argument(
        "--max-filter-depth", type=int, default=_env_int("MAX_FILTER_DEPTH", d.max_filter_depth)
    )
    g.add_argument("--pool-size", type=int, default=_env_int("POOL_SIZE", d.pool_max))
    g.add_argument(
        "--per-user-connections",
        type=int,
        default=_env_int("PER_USER_CONNECTIONS", d.per_user_connections),
    )


def run(args: argparse.Namespace, *, default_data_dir: DataDirDefault | None = None) -> int:
    """`default_data_dir`: where the stack lives without --data-dir (the `pharmgpt` command passes
    the product's; `python -m pharmgpt.localbase` has none and needs --data-dir)."""
    from .stack import LocalStack

    if args.command == "db":
        from . import migrations

        dsn = args.db_uri
        if dsn:
            print("database: the one at --db-uri / DATABASE_URL", file=sys.stderr)
        else:
            stack = LocalStack(_data_dir(args, default_data_dir))
            stack.pg.start()
            dsn = stack.pg.dsn()
        return _migrate(migrations, dsn, baseline=args.baseline, through=args.through)
    if args.local_cmd == "gateway":
        return _gateway(args)
    stack = LocalStack(_data_dir(args, default_data_dir))
    if args.local_cmd == "start":
        info = stack.up()
        print(
            json.dumps(
                {"url": info.url, "gateway_pid": info.gateway_pid, "db_port": stack.pg.port},
                indent=2,
            )
        )
    elif args.local_cmd == "stop":
        stack.down()
        print("stopped")
    elif args.local_cmd == "status":
        st = stack.pg.status()
        gw = stack.running_gateway()
        print(
            json.dumps(
                {
                    "postgres": {"running": st.running, "pid": st.pid, "port": st.port},
                    "gateway": {"running": gw is not None, "url": gw.url if gw else None},
                    "data_dir": str(st.data_dir),
                },
                indent=2,
            )
        )
    elif args.local_cmd == "reset":
        if not args.yes:
            answer = input(f"Delete everything under {stack.pg.data_dir}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        stack.stop_gateway()
        stack.pg.reset()
        print("reset")
    elif args.local_cmd == "keys":
        gw = stack.running_gateway()
        info = stack.stack_info(
            gw.url if gw else "http://127.0.0.1:54321 (not running)", None
        )  # creates keys once
        for name, value in info.as_env().items():
            print(f"{name}={value}")
    return 0


def _migrate(migrations, dsn: str, *, baseline: bool, through: str | None) -> int:
    """Apply or baseline; a refusal is a message and exit status 2, not a traceback."""
    import sys

    import psycopg

    if through and not baseline:
        print("error: --through goes with --baseline", file=sys.stderr)
        return 2
    try:
        if baseline:
            recorded = migrations.baseline(dsn, through=through)
            print(
                "recorded as applied: " + ", ".join(recorded)
                if recorded
                else "nothing to record: every file is recorded already"
            )
            applied = []
        else:
            applied = migrations.apply(dsn, on_notice=_print_warning)
    except migrations.MigrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as e:
        print(f"error: cannot connect to the database: {str(e).strip()}", file=sys.stderr)
        return 2
    if not baseline:
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def _print_warning(diag) -> None:
    """A WARNING while applying (e.g. a GRANT that granted nothing) is worth seeing."""
    import sys

    if diag.severity_nonlocalized == "WARNING":
        print(f"warning: {diag.message_primary}", file=sys.stderr)


def _gateway(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from .gateway import GatewayConfig, create_app
    from .keys import KeyMaterialError
    from .project_keys import read_gateway_file

    if not args.db_uri or not (args.jwt_secret or args.keys_file):
        raise SystemExit(
            "gateway needs --db-uri and --keys-file or --jwt-secret "
            "(or PHARMGPT_GATEWAY_DB_URI / _KEYS_FILE / _JWT_SECRET)"
        )
    keys = None
    if args.keys_file:
        try:
            keys = read_gateway_file(args.keys_file, jwt_secret=args.jwt_secret)
        except (OSError, ValueError, KeyMaterialError) as e:
            raise SystemExit(
                f"gateway: the keys file {args.keys_file} cannot be used: {e}"
            ) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = GatewayConfig(
        db_uri=args.db_uri,
        jwt_secret=args.jwt_secret,
        keys=keys,
        schemas=[s.strip() for s in args.schemas.split(",") if s.strip()],
        anon_role=args.anon_role,
        jwt_audience=args.jwt_aud or None,
        require_apikey=not args.no_apikey,
        max_rows=args.max_rows,
        max_response_bytes=args.max_response_bytes,
        max_query_bytes=args.max_query_bytes,
        max_filters=args.max_filters,
        max_filter_depth=args.max_filter_depth,
        pool_max=args.pool_size,
        pool_min=min(2, args.pool_size),
        per_user_connections=args.per_user_connections,
    )
    uvicorn.run(
        create_app(cfg),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0
