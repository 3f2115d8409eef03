"""`pharmgpt local ...`: run and inspect the local Supabase stand-in."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def default_data_dir() -> Path:
    """services.config.data_dir: the same directory as `pharmgpt run`, doctor and admin use."""
    from services.config import data_dir
    return data_dir()


def _data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else the one default; said on stderr (stdout may be JSON) so it is never a guess."""
    from services.config import DEFAULT_DATA_DIR
    chosen = Path(args.data_dir).expanduser().resolve() if args.data_dir else default_data_dir()
    how = "--data-dir" if args.data_dir else ("the default" if chosen == DEFAULT_DATA_DIR
                                              else "from PHARMGPT_DATA_DIR")
    print(f"data dir: {chosen} ({how}); database: embedded Postgres in {chosen / 'pgdata'}", file=sys.stderr)
    return chosen


def add_commands(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="the embedded Postgres + PostgREST-compatible gateway")
    lsub = local.add_subparsers(dest="local_cmd", required=True)
    for name, help_ in [("start", "start Postgres, apply sql/, start the gateway"),
                        ("stop", "stop the gateway and Postgres"),
                        ("status", "is it running, and where"),
                        ("reset", "stop and delete all local data"),
                        ("keys", "print the local URL and the anon / service-role keys")]:
        p = lsub.add_parser(name, help=help_)
        p.add_argument("--data-dir", type=Path, default=None)
        if name == "reset":
            p.add_argument("--yes", action="store_true", help="do not ask")
    g = lsub.add_parser("gateway", help="serve /rest/v1 for any database, configured like PostgREST")
    g.add_argument("--db-uri", default=os.environ.get("PHARMGPT_GATEWAY_DB_URI"))
    g.add_argument("--port", type=int, default=3000)
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--jwt-secret", default=os.environ.get("PHARMGPT_GATEWAY_JWT_SECRET"))
    g.add_argument("--anon-role", default="anon")
    g.add_argument("--schemas", default="public")
    g.add_argument("--jwt-aud", default="authenticated")
    g.add_argument("--no-apikey", action="store_true", help="do not require the apikey header")
    m = sub.add_parser("db", help="schema migrations")
    msub = m.add_subparsers(dest="db_cmd", required=True)
    mig = msub.add_parser("migrate", help="apply pending sql/ files to a database")
    mig.add_argument("--db-uri", default=os.environ.get("DATABASE_URL"))
    mig.add_argument("--data-dir", type=Path, default=None)


def run(args: argparse.Namespace) -> int:
    from .stack import LocalStack

    if args.command == "db":
        from . import migrations
        dsn = args.db_uri
        if dsn:
            print("database: the one at --db-uri / DATABASE_URL", file=sys.stderr)
        else:
            stack = LocalStack(_data_dir(args))
            stack.pg.start()
            dsn = stack.pg.dsn()
        applied = migrations.apply(dsn)
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return 0
    if args.local_cmd == "gateway":
        return _gateway(args)
    stack = LocalStack(_data_dir(args))
    if args.local_cmd == "start":
        info = stack.up()
        print(json.dumps({"url": info.url, "gateway_pid": info.gateway_pid, "db_port": stack.pg.port}, indent=2))
    elif args.local_cmd == "stop":
        stack.down()
        print("stopped")
    elif args.local_cmd == "status":
        st = stack.pg.status()
        gw = stack._running_gateway()
        print(json.dumps({"postgres": {"running": st.running, "pid": st.pid, "port": st.port},
                          "gateway": {"running": gw is not None, "url": gw.url if gw else None},
                          "data_dir": str(st.data_dir)}, indent=2))
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
        from .auth import api_keys
        keys = api_keys(stack.pg.credentials.jwt_secret)  # creates the secret on first use
        gw = stack._running_gateway()
        print(f"SUPABASE_URL={gw.url if gw else 'http://127.0.0.1:54321 (not running)'}")
        print(f"SUPABASE_ANON_KEY={keys['anon']}")
        print(f"SUPABASE_SERVICE_ROLE_KEY={keys['service_role']}")
        print(f"SUPABASE_JWT_SECRET={stack.pg.credentials.jwt_secret}")
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from .gateway import GatewayConfig, create_app

    if not args.db_uri or not args.jwt_secret:
        raise SystemExit("gateway needs --db-uri and --jwt-secret (or PHARMGPT_GATEWAY_DB_URI / _JWT_SECRET)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = GatewayConfig(db_uri=args.db_uri, jwt_secret=args.jwt_secret,
                        schemas=[s.strip() for s in args.schemas.split(",") if s.strip()],
                        anon_role=args.anon_role, jwt_audience=args.jwt_aud or None,
                        require_apikey=not args.no_apikey)
    uvicorn.run(create_app(cfg), host=args.host, port=args.port, log_level="warning",
                access_log=False, lifespan="on")
    return 0
