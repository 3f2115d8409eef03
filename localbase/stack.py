"""The whole local stand-in for a Supabase project: Postgres + schema + gateway.

`LocalStack.up()` starts the embedded server, applies `sql/`, gives the
`authenticator` role its password and starts the gateway as a child process
on 127.0.0.1, so the app and the tests use the real `supabase` client over
HTTP exactly as they would against a hosted project.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from . import migrations
from .auth import api_keys
from .files import open_private, private_dir
from .postgres import EmbeddedPostgres, free_port

log = logging.getLogger(__name__)

DEFAULT_GATEWAY_PORT = 54321


@dataclass
class StackInfo:
    url: str
    anon_key: str
    service_role_key: str
    jwt_secret: str
    db_uri: str  # superuser DSN, for admin tools and benchmarks
    gateway_pid: int | None = None

    def as_env(self) -> dict[str, str]:
        return {
            "SUPABASE_URL": self.url,
            "SUPABASE_ANON_KEY": self.anon_key,
            "SUPABASE_SERVICE_ROLE_KEY": self.service_role_key,
            "SUPABASE_JWT_SECRET": self.jwt_secret,
        }


class LocalStack:
    def __init__(self, data_dir: Path | str, *, gateway_port: int | None = None, ephemeral: bool = False,
                 sql_dir: Path = migrations.SQL_DIR, schemas: tuple[str, ...] = ("public",)):
        self.pg = EmbeddedPostgres(data_dir, ephemeral=ephemeral)
        self.sql_dir = sql_dir
        self.schemas = schemas
        self._gateway_port = gateway_port
        self._proc: subprocess.Popen | None = None
        self.info: StackInfo | None = None

    @property
    def gateway_pidfile(self) -> Path:
        return self.pg.data_dir / "gateway.json"

    def prepare_database(self) -> list[str]:
        """Start Postgres, apply migrations, set the authenticator's password."""
        private_dir(self.pg.data_dir)
        self.pg.start()
        applied = migrations.apply(self.pg.dsn(), self.sql_dir)
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE authenticator WITH LOGIN PASSWORD {}").format(
                sql.Literal(self.pg.credentials.authenticator_password)))
        return applied

    def up(self, *, wait_s: float = 60) -> StackInfo:
        self.prepare_database()
        existing = self._running_gateway()
        if existing:
            self.info = existing
            return existing
        port = free_port(self._gateway_port or DEFAULT_GATEWAY_PORT)
        creds = self.pg.credentials
        log_path = self.pg.data_dir / "logs" / "gateway.log"
        private_dir(log_path.parent)
        env = {**os.environ, "PHARMGPT_GATEWAY_JWT_SECRET": creds.jwt_secret,
               "PHARMGPT_GATEWAY_DB_URI": self.pg.dsn("authenticator")}
        with open_private(log_path) as logf:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "localbase", "gateway", "--port", str(port),
                 "--schemas", ",".join(self.schemas)],
                env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        self._wait_healthy(url, wait_s, log_path)
        keys = api_keys(creds.jwt_secret)
        self.info = StackInfo(url, keys["anon"], keys["service_role"], creds.jwt_secret, self.pg.dsn(),
                              self._proc.pid)
        with open_private(self.gateway_pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as f:
            f.write(json.dumps({"pid": self._proc.pid, "url": url}).encode())
        return self.info

    def _wait_healthy(self, url: str, wait_s: float, log_path: Path) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gateway exited with {self._proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become healthy within {wait_s:.0f}s (log: {log_path})")

    def _running_gateway(self) -> StackInfo | None:
        try:
            state = json.loads(self.gateway_pidfile.read_text())
            os.kill(state["pid"], 0)
            with urllib.request.urlopen(f"{state['url']}/health", timeout=2) as r:
                if r.status != 200:
                    return None
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return None
        keys = api_keys(self.pg.credentials.jwt_secret)
        return StackInfo(state["url"], keys["anon"], keys["service_role"], self.pg.credentials.jwt_secret,
                         self.pg.dsn(), state["pid"])

    def stop_gateway(self) -> None:
        pid = None
        if self._proc is not None:
            pid = self._proc.pid
        else:
            try:
                pid = json.loads(self.gateway_pidfile.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                pid = None
        if pid:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
            if self._proc is not None:
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
        self._proc = None
        self.gateway_pidfile.unlink(missing_ok=True)

    def down(self) -> None:
        self.stop_gateway()
        self.pg.stop()
