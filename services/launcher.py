"""`pharmgpt run`: bring up what the app needs, then Streamlit (warmed at start, app/warm.py)."""

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
    # app/server.py is Streamlit plus our route and a warm-up at start: the embedder, Chroma and the
    # lexicon load while the first user signs in, not on their first question ("ready" when done)
    cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app" / "server.py"),
           "--server.port", str(port), "--server.address", "127.0.0.1"]
    print(f"PharmGPT: http://127.0.0.1:{port} (warming up the search model…)", flush=True)
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
