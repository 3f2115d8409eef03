"""The app started the README's way (`pharmgpt run --port`) for the browser tests, on a
throwaway data directory; its log outlives the run so a failure can be read afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_app(name: str, **settings: str) -> Iterator[str]:
    """Yield the app's URL; `settings` are extra environment variables (PHARMGPT_…)."""
    from pharmgpt.localbase.postgres import free_port

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUPABASE_", "GROQ_", "OPENAI_", "CHROMA_"))
    }
    env.update(
        {
            "PHARMGPT_DATA_DIR": str(data / "pharmgpt"),
            "PHARMGPT_BCRYPT_ROUNDS": "4",
            "PHARMGPT_SECRETS_FILE": str(data / "none.toml"),
            **settings,
        }
    )
    log = open(data / "app.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pharmgpt", "run", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((data / "app.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.copy(data / "app.log", Path(tempfile.gettempdir()) / f"pharmgpt-{name}-app.log")
        shutil.rmtree(data, ignore_errors=True)
