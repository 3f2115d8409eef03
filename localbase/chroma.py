"""A Chroma server from the `chromadb` wheel (`chroma run`), on 127.0.0.1.

The embedded Chroma store is safe for one process only: a second process that
writes to the same directory is not seen by the first one's in-memory index
(measured: its queries miss the new chunks). So once the ingestion worker runs in
its own process (`pharmgpt run`), the app and the workers share one Chroma server
over the data directory's `chroma/` folder, the same layout the embedded client
writes. The tests start the same server for the `chroma_server` suite.

Chroma 1.x servers have no authentication of their own; the server listens on
127.0.0.1 only (see docs/security.md for what that leaves open).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .files import open_private, private_dir, private_umask
from .postgres import free_port


def state_file(chroma_dir: Path) -> Path:
    """Where a running server over `chroma_dir` is announced (pid, port), beside that directory."""
    return Path(chroma_dir).parent / "chroma-server.json"


def running_server(chroma_dir: Path) -> tuple[str, int] | None:
    """(host, port) of a live server that `pharmgpt run` started over `chroma_dir`, else None.

    A `pharmgpt worker` or `pharmgpt reconcile` started by hand beside `pharmgpt run` must use
    that server: opening the same directory with the embedded client as well would let two
    processes write it (the failure this server exists to avoid)."""
    try:
        state = json.loads(state_file(chroma_dir).read_text())
        os.kill(int(state["pid"]), 0)
        server = ChromaServer(chroma_dir, port=int(state["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (server.host, server.port) if server.healthy() else None


class ChromaServer:
    def __init__(self, path: Path, *, port: int | None = None, log_path: Path | None = None):
        self.path = Path(path)
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def env(self) -> dict[str, str]:
        """What points the app and the workers at this server (services/config.py)."""
        return {"CHROMA_HOST": self.host, "CHROMA_PORT": str(self.port)}

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pharmgpt.localbase.chroma",
            "--path",
            str(self.path),
            "--port",
            str(self.port),
        ]

    def prepare(self) -> ChromaServer:
        """The directory, the port (a free one unless given) and the log, before any start."""
        private_dir(self.path)
        self.port = self.port or free_port()
        self.log_path = self.log_path or self.path.parent / "logs" / "chroma.log"
        private_dir(self.log_path.parent)
        return self

    def record(self, pid: int) -> None:
        """Announce the server process `pid` on this port (`running_server`); again after a
        restart (pharmgpt/supervisor.py), whose process has a new pid."""
        with open_private(state_file(self.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as f:
            f.write(json.dumps({"pid": pid, "port": self.port}).encode())

    def forget(self) -> None:
        state_file(self.path).unlink(missing_ok=True)

    def start(self, wait_s: float = 60) -> ChromaServer:
        """One unsupervised server (the tests' `chroma_server`); `pharmgpt run` restarts its
        own when it dies (pharmgpt/supervisor.py `supervise_chroma`)."""
        self.prepare()
        with open_private(self.log_path) as logf:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"the Chroma server exited with {self._proc.returncode}; see {self.log_path}"
                )
            if self.healthy():
                self.record(self._proc.pid)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the Chroma server did not answer within {wait_s:.0f}s; see {self.log_path}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self.forget()
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m pharmgpt.localbase.chroma --path P --port N`: the server, private files,
    loopback only."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pharmgpt.localbase.chroma")
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    private_umask()
    import chromadb_rust_bindings

    try:
        chromadb_rust_bindings.cli(
            ["chroma", "run", "--path", args.path, "--host", "127.0.0.1", "--port", str(args.port)]
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
