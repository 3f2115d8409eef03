"""The wheel, installed (not editable) into a fresh venv outside the checkout, works from any
directory: `pharmgpt local start` (sql/ shipped as package data, the gateway started by its
package name), a sign-up through the wiring, `pharmgpt doctor`, and `pharmgpt run` serving the
app with the shipped Streamlit settings.

The fresh venv gets this environment's dependencies through a .pth line (pip would fetch them
otherwise); a .pth line adds a directory without running the .pth files inside it, so the
checkout's editable install is not seen there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from pharmgpt.localbase.postgres import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _copy_checkout(dest: Path) -> None:
    """The checkout's files (tracked and new, not ignored): building in place would leave a
    build/ folder in it."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("installed")
    src, dist, venv = base / "src", base / "dist", base / "venv"
    _copy_checkout(src)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
        timeout=280,
    )
    (wheel,) = dist.glob("pharmgpt-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    Path(venv_site(venv), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    anywhere = base / "anywhere"  # the directory every command runs in: no checkout near it
    anywhere.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHARMGPT_", "SUPABASE_", "GROQ_", "OPENAI_", "CHROMA_", "PYTHON"))
    }
    env.update(
        PHARMGPT_DATA_DIR=str(base / "data"),
        PHARMGPT_SECRETS_FILE=str(base / "none.toml"),
        PHARMGPT_WARM_START="false",
        PHARMGPT_BCRYPT_ROUNDS="4",
    )
    run = dict(cwd=anywhere, env=env, capture_output=True, text=True, timeout=120)
    try:
        yield venv, run
    finally:
        subprocess.run([str(venv / "bin" / "pharmgpt"), "local", "stop"], **run)


def test_the_installed_package_starts_the_stack_signs_up_and_checks(installed):
    venv, run = installed
    pharmgpt, python = str(venv / "bin" / "pharmgpt"), str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import pharmgpt; print(pharmgpt.__file__)"], **run)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    started = subprocess.run([pharmgpt, "local", "start"], **run)
    assert started.returncode == 0, started.stdout + started.stderr
    assert json.loads(started.stdout)["url"].startswith("http://127.0.0.1:")
    signup = """
import asyncio
from pharmgpt.wiring import open_services

async def main():
    async with open_services() as services:
        signed = await services.signin.sign_up("installed-user", "correct horse battery")
        assert (await services.sessions.validate_session(signed.token)).id == signed.user.id
        print(signed.user.username)

asyncio.run(main())
"""
    out = subprocess.run([python, "-c", signup], **run)
    assert out.returncode == 0 and out.stdout.strip() == "installed-user", out.stdout + out.stderr
    doctor = subprocess.run([pharmgpt, "doctor"], **run)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "OK   supabase" in doctor.stdout and "OK   signing" in doctor.stdout


def test_pharmgpt_run_serves_the_app_from_any_directory(installed):
    venv, run = installed
    port = free_port()
    proc = subprocess.Popen(
        [str(venv / "bin" / "pharmgpt"), "run", "--port", str(port), "--in-app-worker"],
        cwd=run["cwd"],
        env=run["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    healthy = True
            except OSError:
                time.sleep(0.5)
        assert healthy, f"exited with {proc.poll()}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        # Streamlit runs the installed app/server.py, with the shipped config.toml as flags
        (cmd,) = [c for c in _cmdlines() if "streamlit" in c and f"--server.port={port}" in c]
        assert cmd[4] == str(Path(venv_site(venv), "pharmgpt", "app", "server.py"))
        assert "--server.headless=true" in cmd and "--browser.gatherUsageStats=false" in cmd
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert "local stack stopped" in out, out


def _cmdlines() -> list[list[str]]:
    out = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append(p.read_bytes().decode(errors="replace").split("\0")[:-1])
        except OSError:
            pass
    return out


def venv_site(venv: Path) -> str:
    return subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
