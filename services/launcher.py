"""`pharmgpt run`: bring up what the app needs, then Streamlit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .config import PROJECT_ROOT, Settings, describe_data


def upload_limit_mb(settings: Settings) -> int:
    """Streamlit's `server.maxUploadSize` (whole MB) from the one setting, max_upload_bytes, so the
    uploader's "Limit … per file" and the browser's refusal match the service's own check."""
    return max(1, -(-settings.max_upload_bytes // 2**20))


def streamlit_command(settings: Settings, port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "server.py"),
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--server.maxUploadSize", str(upload_limit_mb(settings))]


def run_app(port: int = 8501) -> int:
    settings = Settings.load()
    env = dict(os.environ)
    env["PHARMGPT_DATA_DIR"] = str(settings.data_dir)  # the app (and its worker) use this very directory
    print(describe_data(settings), flush=True)
    stack = None
    if settings.embedded:
        from localbase.stack import LocalStack
        stack = LocalStack(settings.data_dir)
        info = stack.up()
        env.update(info.as_env())
        print(f"local stack: {info.url}", flush=True)
    cmd = streamlit_command(settings, port)
    print(f"PharmGPT: http://127.0.0.1:{port}", flush=True)
    # stop cleanly on Ctrl-C and on SIGTERM, even when started in the background
    # (where a shell leaves SIGINT ignored): Streamlit first, then the stack
    def _stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if stack is not None:
            stack.down()
            print("local stack stopped", flush=True)
