"""Keep a child process running: restart it when it dies (with backoff), stop it on request.

`pharmgpt run` supervises the ingestion worker this way (issue 12): a file that
crashes or exhausts the worker takes down that process only, never Streamlit,
and the worker comes back by itself. Its job is reclaimed through the queue's
heartbeat (services/ingestion.py), so nothing queued is lost. The Chroma server
is kept alive by the same machinery (`supervise_chroma`): a server killed by
the OOM killer comes back on the same port over the same directory, and the
app's and the workers' clients reconnect (rag/store.py).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pharmgpt.localbase.chroma import ChromaServer
from pharmgpt.localbase.files import open_private, private_dir

log = logging.getLogger(__name__)


class Supervised:
    """One child process, restarted after `min_backoff_s` doubling up to `max_backoff_s` while
    it keeps dying quickly; a run longer than `stable_after_s` resets the backoff."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 60.0,
        stop_timeout_s: float = 20.0,
        on_spawn: Callable[[int], None] | None = None,
        announce: Callable[[str], None] | None = None,
    ):
        """`on_spawn(pid)` runs after every (re)start; `announce(message)` gets each restart
        notice as well as the log (the launcher prints it)."""
        self.name = name
        self.cmd = list(cmd)
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.stop_timeout_s = stop_timeout_s
        self.on_spawn = on_spawn
        self.announce = announce
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def exit_code(self) -> int | None:
        """The current process's exit code once it has died (before any restart), else None."""
        proc = self._proc
        return proc.poll() if proc is not None else None

    def _spawn(self) -> None:
        out = subprocess.DEVNULL
        if self.log_path is not None:
            private_dir(self.log_path.parent)
            out = open_private(self.log_path)
        try:
            # its own session: a Ctrl-C in the terminal reaches the supervisor, which stops it
            # in order
            self._proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        self._started_at = time.monotonic()
        log.info("%s started (pid %s)", self.name, self._proc.pid)
        if self.on_spawn is not None:
            self.on_spawn(self._proc.pid)

    def start(self) -> Supervised:
        with self._lock:
            self._stopping.clear()
            self._spawn()
        self._thread = threading.Thread(
            target=self._watch, name=f"supervise-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def _watch(self) -> None:
        quick_failures = 0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._stopping.wait(0.2)
                continue
            code = proc.returncode if proc is not None else None
            ran = time.monotonic() - self._started_at
            quick_failures = 0 if ran >= self.stable_after_s else quick_failures + 1
            delay = min(self.max_backoff_s, self.min_backoff_s * 2 ** max(0, quick_failures - 1))
            notice = f"{self.name} exited (code {code}); restarting in {delay:g}s"
            if self.announce is not None:
                self.announce(notice)  # printed: logged as well only below warning level
                log.info("%s after %.0f s", notice, ran)
            else:
                log.warning("%s after %.0f s", notice, ran)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()
                self.restarts += 1

    def stop(self) -> int | None:
        """SIGTERM (the worker finishes or hands back its jobs), SIGKILL after `stop_timeout_s`."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if self._thread is not None:
            self._thread.join(5)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop within %.0f s; killing it", self.name, self.stop_timeout_s
                )
                proc.kill()
                proc.wait(5)
        log.info("%s stopped", self.name)
        return proc.returncode


def worker_command() -> list[str]:
    """`pharmgpt worker` with this interpreter, so it runs in the same environment as the app."""
    import sys

    return [sys.executable, "-m", "pharmgpt", "worker"]


def supervise_workers(
    count: int,
    env: dict[str, str],
    logs_dir: Path,
    *,
    max_backoff_s: float = 30.0,
    cwd: Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> list[Supervised]:
    """Start `count` supervised `pharmgpt worker` processes sharing the queue."""
    env = {**env, "PHARMGPT_APP_RUNS_WORKER": "false"}
    out = []
    for i in range(count):
        name = "worker" if count == 1 else f"worker-{i + 1}"
        out.append(
            Supervised(
                name,
                worker_command(),
                env=env,
                log_path=logs_dir / f"{name}.log",
                cwd=cwd,
                max_backoff_s=max_backoff_s,
                announce=announce,
            ).start()
        )
    return out


class SupervisedChroma:
    """The Chroma server of `pharmgpt run`, restarted on the same port and directory when it
    dies. Offers ChromaServer's `host`, `port`, `url`, `env()` and `healthy()`."""

    def __init__(self, server: ChromaServer, child: Supervised):
        self.server = server
        self.child = child
        self.host, self.port, self.url = server.host, server.port, server.url

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def env(self) -> dict[str, str]:
        return self.server.env()

    def healthy(self) -> bool:
        return self.server.healthy()

    def stop(self) -> None:
        self.child.stop()
        self.server.forget()


def supervise_chroma(
    path: Path,
    *,
    log_path: Path | None = None,
    port: int | None = None,
    announce: Callable[[str], None] | None = None,
    min_backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    wait_s: float = 60.0,
) -> SupervisedChroma:
    """Start a Chroma server over `path` and keep it running; returns once it answers. A server
    that dies before its first answer is not restarted: the error is raised instead."""
    server = ChromaServer(path, port=port, log_path=log_path).prepare()
    child = Supervised(
        "chroma server",
        server.command(),
        log_path=server.log_path,
        min_backoff_s=min_backoff_s,
        max_backoff_s=max_backoff_s,
        stop_timeout_s=10.0,
        on_spawn=server.record,
        announce=announce,
    ).start()
    supervised = SupervisedChroma(server, child)
    deadline = time.monotonic() + wait_s
    while not server.healthy():
        code = child.exit_code()
        if code is not None or time.monotonic() >= deadline:
            supervised.stop()
            why = f"exited with {code}" if code is not None else f"did not answer in {wait_s:.0f}s"
            raise RuntimeError(f"the Chroma server {why}; see {server.log_path}")
        time.sleep(0.1)
    return supervised


def stop_all(children: Sequence[Supervised]) -> None:
    """Stop children in parallel (each may take up to its stop timeout)."""
    threads = [threading.Thread(target=c.stop, daemon=True) for c in children]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
