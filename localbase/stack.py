"""The whole local stand-in for a Supabase project: Postgres + schema + gateway.

`LocalStack.up()` starts the embedded server, applies `sql/`, gives the
`authenticator` role its password and starts the gateway as a child process
on 127.0.0.1, so the app and the tests use the real `supabase` client over
HTTP exactly as they would against a hosted project. Its keys are a new
project's (ES256 signing key, `sb_publishable_…`/`sb_secret_…`), or with
`legacy_keys=True` a legacy project's (HS256 secret, JWT anon/service keys).
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

from . import migrations, project_keys
from .files import open_private, private_dir
from .keys import SigningKey, project_signer
from .postgres import EmbeddedPostgres, free_port

log = logging.getLogger(__name__)

DEFAULT_GATEWAY_PORT = 54321


@dataclass
class StackInfo:
    url: str
    anon_key: str  # sb_publishable_… (legacy: the anon JWT)
    service_role_key: str  # sb_secret_… (legacy: the service-role JWT)
    jwt_secret: str | None  # legacy only: the HS256 secret
    db_uri: str  # superuser DSN, for admin tools and benchmarks
    gateway_pid: int | None = None
    signing_key: str | None = None  # the ES256 private JWK (JSON) user tokens are signed with

    @property
    def legacy(self) -> bool:
        return self.signing_key is None

    @property
    def signer(self) -> SigningKey:
        """What the services (and tests) sign user tokens with."""
        return project_signer(self.signing_key, self.jwt_secret)

    def settings_overrides(self) -> dict[str, str | None]:
        """The Settings fields that point the services at this stack."""
        return {
            "supabase_url": self.url,
            "supabase_anon_key": self.anon_key,
            "supabase_service_role_key": self.service_role_key,
            "supabase_jwt_secret": self.jwt_secret,
            "supabase_jwt_signing_key": self.signing_key,
        }

    def gateway_keys(self) -> dict:
        """The contents of a `--keys-file` for another gateway in front of this project
        (verification material only: the public JWK, the API keys, the legacy secret if any)."""
        return project_keys.ProjectKeys(
            self.legacy, self.anon_key, self.service_role_key, self.jwt_secret, self.signing_key
        ).gateway_config()

    def as_env(self) -> dict[str, str]:
        if self.legacy:
            assert self.jwt_secret
            return {
                "SUPABASE_URL": self.url,
                "SUPABASE_ANON_KEY": self.anon_key,
                "SUPABASE_SERVICE_ROLE_KEY": self.service_role_key,
                "SUPABASE_JWT_SECRET": self.jwt_secret,
            }
        assert self.signing_key
        return {
            "SUPABASE_URL": self.url,
            "SUPABASE_PUBLISHABLE_KEY": self.anon_key,
            "SUPABASE_SECRET_KEY": self.service_role_key,
            "SUPABASE_JWT_SIGNING_KEY": self.signing_key,
        }


def _is_gateway(pid: int) -> bool:
    """Is `pid` a localbase gateway? (Without /proc, trust the pidfile.)"""
    proc = Path("/proc")
    if not (proc / "self").exists():
        return True
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return b"localbase" in cmdline and b"gateway" in cmdline


class LocalStack:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        gateway_port: int | None = None,
        ephemeral: bool = False,
        sql_dir: Path | None = None,
        schemas: tuple[str, ...] = ("public",),
        legacy_keys: bool = False,
    ):
        self.pg = EmbeddedPostgres(data_dir, ephemeral=ephemeral)
        self.legacy_keys = legacy_keys
        self.sql_dir = sql_dir
        self.schemas = schemas
        self._gateway_port = gateway_port
        self._proc: subprocess.Popen | None = None
        self.info: StackInfo | None = None

    @property
    def gateway_pidfile(self) -> Path:
        return self.pg.data_dir / "gateway.json"

    def keys(self) -> project_keys.ProjectKeys:
        """This project's keys (created on first use, kept in the data directory)."""
        return project_keys.load_or_create(
            self.pg.data_dir, self.pg.credentials.jwt_secret, legacy=self.legacy_keys
        )

    def stack_info(self, url: str, pid: int | None) -> StackInfo:
        """How to reach a gateway at `url` on this stack: its keys (created once) and DSN."""
        k = self.keys()
        return StackInfo(
            url, k.anon_key, k.service_role_key, k.jwt_secret, self.pg.dsn(), pid, k.signing_key
        )

    def prepare_database(self) -> list[str]:
        """Start Postgres, apply migrations, set the authenticator's password."""
        private_dir(self.pg.data_dir)
        self.pg.start()
        applied = migrations.apply(self.pg.dsn(), self.sql_dir)
        with psycopg.connect(self.pg.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE authenticator WITH LOGIN PASSWORD {}").format(
                    sql.Literal(self.pg.credentials.authenticator_password)
                )
            )
        return applied

    def up(self, *, wait_s: float = 60) -> StackInfo:
        self.prepare_database()
        existing = self.running_gateway()
        if existing:
            self.info = existing
            return existing
        if (
            self.gateway_pidfile.exists()
        ):  # a dead gateway, or one running with the other kind of keys
            self.stop_gateway()
        self._proc, url = self.spawn_gateway(
            port=self._gateway_port or DEFAULT_GATEWAY_PORT, wait_s=wait_s
        )
        self.info = self.stack_info(url, self._proc.pid)
        with open_private(self.gateway_pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as f:
            f.write(
                json.dumps(
                    {"pid": self._proc.pid, "url": url, "legacy_keys": self.legacy_keys}
                ).encode()
            )
        return self.info

    def spawn_gateway(
        self, *extra_args: str, port: int = 0, wait_s: float = 60, log_name: str = "gateway.log"
    ) -> tuple[subprocess.Popen, str]:
        """Start a gateway child process on this database (extra_args: e.g. limits) and wait
        until it is healthy; the caller owns the process."""
        port = free_port(port or None)
        log_path = self.pg.data_dir / "logs" / log_name
        private_dir(log_path.parent)
        keys_file = self.pg.data_dir / "gateway-keys.json"
        project_keys.write_gateway_file(keys_file, self.keys())
        env = {
            **os.environ,
            "PHARMGPT_GATEWAY_KEYS_FILE": str(keys_file),
            "PHARMGPT_GATEWAY_DB_URI": self.pg.dsn("authenticator"),
        }
        env.pop("PHARMGPT_GATEWAY_JWT_SECRET", None)
        with open_private(log_path) as logf:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pharmgpt.localbase",
                    "gateway",
                    "--port",
                    str(port),
                    "--schemas",
                    ",".join(self.schemas),
                    *extra_args,
                ],
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            self._wait_healthy(url, wait_s, log_path, proc)
        except RuntimeError:
            proc.kill()
            proc.wait(5)
            raise
        return proc, url

    def _wait_healthy(
        self, url: str, wait_s: float, log_path: Path, proc: subprocess.Popen
    ) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become healthy within {wait_s:.0f}s (log: {log_path})")

    def running_gateway(self) -> StackInfo | None:
        """The gateway another process runs on this data directory (its pidfile, alive and
        healthy, with this stack's kind of keys), or None."""
        try:
            state = json.loads(self.gateway_pidfile.read_text())
            if bool(state.get("legacy_keys", True)) != self.legacy_keys:
                return None  # running with the other kind of keys
            os.kill(state["pid"], 0)
            with urllib.request.urlopen(f"{state['url']}/health", timeout=2) as r:
                if r.status != 200:
                    return None
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return None
        return self.stack_info(state["url"], state["pid"])

    def stop_gateway(self) -> None:
        pid = None
        if self._proc is not None:
            pid = self._proc.pid
        else:
            try:
                pid = json.loads(self.gateway_pidfile.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                pid = None
            if pid and not _is_gateway(pid):
                pid = None  # the recorded process is gone; its pid may belong to something else now
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
