"""The acceptance test of packaging (issue 9): the product installs like a product.

The checkout's files are copied out, built into a wheel and installed (not editable) into a
fresh venv outside the checkout. The venv borrows this venv's site-packages for the
dependencies through a `.pth` file (nothing is downloaded); its own site-packages holds only
`pharmgpt`. From another directory, with HOME in a temporary folder, the installed `pharmgpt`
command starts the local stack, a user signs up through the installed services, `pharmgpt
doctor` passes, and all data lands in HOME/.local/share/pharmgpt, none in site-packages.
Only the console script is called (never a module path), so moving the CLI keeps this valid.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

SIGN_UP = textwrap.dedent(
    """
    import asyncio

    from pharmgpt.wiring import load_settings, open_services


    async def main():
        async with open_services() as services:
            signed = await services.signin.sign_up("wheel-user", "correct horse battery")
            user = await services.sessions.validate_session(signed.token)
            assert user.id == signed.user.id
            print("data_dir", load_settings().data_dir)


    asyncio.run(main())
    """
)


def _run(args: list, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, its site-packages, the wheel): the checkout built and installed elsewhere."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    listed = _checked(
        _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], timeout=30, cwd=ROOT)
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is not copied
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip"]
    _checked(
        _run(
            [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, source],
            timeout=120,
        )
    )
    (wheel,) = wheels.glob("pharmgpt-*.whl")
    venv = tmp / "venv"
    _checked(_run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=60))
    site = Path(
        _checked(
            _run(
                [
                    venv / "bin/python",
                    "-c",
                    "import sysconfig; print(sysconfig.get_path('purelib'))",
                ],
                timeout=30,
            )
        ).stdout.strip()
    )
    # the dependencies, from this venv: a path line in a .pth (its own .pth files stay inactive,
    # so the checkout's editable finder does not come along)
    borrowed = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "_borrowed_deps.pth").write_text("\n".join(borrowed) + "\n")
    _checked(
        _run(
            [*pip, "--python", venv / "bin/python", "install", "-q", "--no-deps", "--no-index"]
            + [wheel],
            timeout=120,
        )
    )
    return venv, site, wheel


@pytest.fixture
def outside(tmp_path, installed):
    """(cwd, env): another directory, HOME in tmp, no setting or path from this session."""
    venv, _, _ = installed
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    cwd.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    return cwd, env


def test_wheel_holds_one_import_name_and_the_sql(installed, outside):
    venv, site, wheel = installed
    cwd, env = outside
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    assert {n.split("/")[0] for n in names} == {"pharmgpt", "pharmgpt-0.1.0.dist-info"}
    assert any(re.fullmatch(r"pharmgpt/sql/\d{4}_\w+\.sql", n) for n in names)
    top = {p.name for p in site.iterdir()} - {"_borrowed_deps.pth", "__pycache__"}
    assert {n for n in top if not n.endswith(".dist-info")} == {"pharmgpt"}
    where = _checked(
        _run(
            [venv / "bin/python", "-c", "import pharmgpt.services as s; print(s.__file__)"],
            timeout=60,
            cwd=cwd,
            env=env,
        )
    )
    assert Path(where.stdout.strip()).is_relative_to(site / "pharmgpt")
    for bare in ("app", "services", "rag", "migration", "localbase"):
        probe = _run([venv / "bin/python", "-c", f"import {bare}"], timeout=60, cwd=cwd, env=env)
        assert probe.returncode != 0, f"`import {bare}` works in the installed venv"
    usage = _checked(_run([venv / "bin/pharmgpt", "--help"], timeout=60, cwd=cwd, env=env))
    for command in ("run", "doctor", "local"):
        assert command in usage.stdout


def test_installed_command_starts_the_stack_and_a_user_signs_up(installed, outside):
    venv, site, _ = installed
    cwd, env = outside
    data = Path(env["HOME"]) / ".local/share/pharmgpt"
    before = _files(site)
    pharmgpt = venv / "bin/pharmgpt"
    try:
        start = _run([pharmgpt, "local", "start"], timeout=120, cwd=cwd, env=env)
        _checked(start)
        signed = _checked(_run([venv / "bin/python", "-c", SIGN_UP], timeout=120, cwd=cwd, env=env))
        assert f"data_dir {data}" in signed.stdout
        doctor = _checked(_run([pharmgpt, "doctor"], timeout=120, cwd=cwd, env=env))
        for part in ("supabase", "signing", "chroma"):
            assert re.search(rf"OK\s+{part}\b", doctor.stdout), doctor.stdout
        assert (data / "pgdata").is_dir()
        assert not list(cwd.iterdir()), "the command wrote into its working directory"
        written = _files(site) - before
        assert not written, f"written inside site-packages: {sorted(written)[:10]}"
    finally:
        stop = _run([pharmgpt, "local", "stop"], timeout=120, cwd=cwd, env=env)
        if stop.returncode != 0 and (data / "pgdata").is_dir():  # never leave Postgres running
            from pharmgpt.localbase.stack import LocalStack

            LocalStack(data).down()
    assert stop.returncode == 0, stop.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_installed_run_serves_the_app_from_another_directory(installed, outside):
    """`pharmgpt run` (stack, Chroma server, worker, Streamlit) answers its health check, keeps
    Streamlit's usage statistics off outside the checkout too, and stops on SIGTERM."""
    venv, site, _ = installed
    cwd, env = outside
    before = _files(site)
    port = _free_port()
    log = cwd.parent / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            [venv / "bin/pharmgpt", "run", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the children go with it on cleanup
        )
    try:
        deadline = time.monotonic() + 150
        while not _healthy(f"http://127.0.0.1:{port}/_stcore/health"):
            if run.poll() is not None:  # it exited before serving
                pytest.fail(log.read_text())
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=90)
        output = log.read_text()
        assert "local stack stopped" in output, output
        # the packaged config (pharmgpt.streamlit_config: gatherUsageStats = false) reached it
        assert "Collecting usage statistics" not in output, output
        written = _files(site) - before
        assert not written, f"written inside site-packages: {sorted(written)[:10]}"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        _run([venv / "bin/pharmgpt", "local", "stop"], timeout=120, cwd=cwd, env=env)
