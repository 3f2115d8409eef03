"""`pharmgpt run`: bring up what the app needs, then Streamlit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .config import PROJECT_ROOT, Settings


def run_app(port: int = 8501) -> int:
    settings = Settings.load()
    env = dict(os.environ)
    stack = None
    if settings.embedded:
        from localbase.stack import LocalStack
        stack = LocalStack(settings.data_dir)
        info = stack.up()
        env.update(info.as_env())
        print(f"local stack: {info.url} (data in {settings.data_dir})", flush=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "main.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1"]
    print(f"PharmGPT: http://127.0.0.1:{port}", flush=True)
    proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()
    finally:
        if stack is not None:
            stack.down()
