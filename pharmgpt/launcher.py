"""`pharmgpt run`: bring up what the app needs, then Streamlit.

On the embedded default that is the local stack (Postgres + gateway), a Chroma
server on 127.0.0.1 over the data directory (the embedded store is safe for one
process only, and the app and the worker are two: localbase/chroma.py), and the
ingestion worker as its own supervised process (pharmgpt/supervisor.py), so a
file that crashes or exhausts the worker never takes the app down, and a dead
worker comes back by itself; so does a dead Chroma server, on the same port.
Streamlit is served through app/server.py, which warms up at start (the embedder,
Chroma and the lexicon load while the first user signs in, not on their first
question: app/warm.py). Ctrl-C or SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

from pharmgpt.localbase.files import private_dir, secure_tree
from pharmgpt.services.config import Settings, describe_data, secrets_path

from .supervisor import stop_all, supervise_chroma, supervise_workers
from .wiring import load_settings, local_stack


def upload_limit_mb(settings: Settings) -> int:
    """Streamlit's `server.maxUploadSize` (whole MB) from the one setting, max_upload_bytes, so the
    uploader's "Limit … per file" and the browser's refusal match the service's own check."""
    return max(1, -(-settings.max_upload_bytes // 2**20))


def packaged_streamlit_config() -> dict[str, object]:
    """The shipped .streamlit/config.toml (package pharmgpt.streamlit_config) as
    {"section.key": value}: Streamlit reads only ./.streamlit from the directory it runs in,
    so an installed `pharmgpt run`, started anywhere, passes these as flags."""
    raw = resources.files("pharmgpt.streamlit_config").joinpath("config.toml").read_text("utf-8")
    return {
        f"{section}.{key}": value
        for section, options in tomllib.loads(raw).items()
        for key, value in options.items()
    }


def _flag_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def app_script() -> Path:
    """app/server.py where the package is installed (a checkout or site-packages)."""
    return Path(str(resources.files("pharmgpt.app").joinpath("server.py")))


def streamlit_command(settings: Settings, port: int) -> list[str]:
    options = {
        **packaged_streamlit_config(),
        "server.port": port,
        "server.address": "127.0.0.1",
        "server.maxUploadSize": upload_limit_mb(settings),
    }
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_script()),
        *(f"--{name}={_flag_value(value)}" for name, value in options.items()),
    ]


def _say(message: str) -> None:
    """A supervised process's restart notice, on the launcher's output."""
    print(message, flush=True)


def run_app(port: int = 8501, workers: int = 1, in_app_worker: bool = False) -> int:
    """`in_app_worker`: the old single-process mode (worker inside Streamlit, embedded Chroma, no
    Chroma port), for a host shared with other OS accounts (docs/security.md)."""
    settings = load_settings()
    private_dir(settings.data_dir)
    secure_tree(settings.data_dir)  # a data directory made by an older version, with 0644 files
    logs = settings.data_dir / "logs"
    env = dict(os.environ)
    # the app and its workers use this very directory and secrets file, wherever they run
    env["PHARMGPT_DATA_DIR"] = str(settings.data_dir)
    secrets = secrets_path()
    if secrets is not None and secrets.is_file():
        env["PHARMGPT_SECRETS_FILE"] = str(secrets)
    print(describe_data(settings), flush=True)
    stack = chroma = None
    children = []

    # stop cleanly on Ctrl-C and on SIGTERM, even when started in the background
    # (where a shell leaves SIGINT ignored): Streamlit first, then the workers, then the stores
    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    proc = None
    try:
        if settings.embedded:
            stack = local_stack(settings)
            info = stack.up()
            env.update(info.as_env())
            print(f"local stack: {info.url}", flush=True)
        if in_app_worker:
            env["PHARMGPT_APP_RUNS_WORKER"] = "true"
            print(
                "ingestion: inside the app process, embedded Chroma (--in-app-worker)", flush=True
            )
        else:
            if not settings.chroma_host:
                chroma = supervise_chroma(
                    settings.data_dir / "chroma",
                    log_path=logs / "chroma.log",
                    announce=_say,
                    max_backoff_s=settings.worker_restart_max_s,
                )
                env.update(chroma.env())
                print(f"chroma server: {chroma.url}", flush=True)
            env["PHARMGPT_APP_RUNS_WORKER"] = "false"
            if workers > 0:
                children = supervise_workers(
                    workers,
                    env,
                    logs,
                    max_backoff_s=settings.worker_restart_max_s,
                    announce=_say,
                )
                print(
                    f"ingestion: {workers} supervised worker process(es), logs in {logs}",
                    flush=True,
                )
            else:
                print(
                    "ingestion: no worker here; run `pharmgpt worker` beside this app", flush=True
                )
        cmd = streamlit_command(settings, port)
        print(f"PharmGPT: http://127.0.0.1:{port} (warming up the search model…)", flush=True)
        proc = subprocess.Popen(cmd, env=env)
        return proc.wait()
    except KeyboardInterrupt:
        if proc is None:
            return 130
        proc.terminate()
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        signal.signal(
            signal.SIGINT, signal.SIG_IGN
        )  # a second Ctrl-C must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if children:
            stop_all(children)
            print("ingestion workers stopped", flush=True)
        if chroma is not None:
            chroma.stop()
            print("chroma server stopped", flush=True)
        if stack is not None:
            stack.down()
            print("local stack stopped", flush=True)
