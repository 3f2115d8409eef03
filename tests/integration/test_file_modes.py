"""Issue 12 item 7: after a stack start and an ingestion, the data directory and everything
under it is private to the OS account (0700 directories, 0600 files).

The stack and the worker run through their real entry points (`pharmgpt local start`,
`pharmgpt worker --once`), as an install runs them; the upload runs in this test process,
whose umask stays the usual 022, so the modes set explicitly where files are made are
checked too (outbox.sqlite3, blobs).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from pharmgpt.localbase.files import loose_modes

from tests.conftest import service_settings, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pharmgpt", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def loose_umask():
    """This process (the uploading app side) runs with the usual 022: explicit modes must hold."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def data_dir():
    root = Path(
        tempfile.mkdtemp(prefix="pgt-modes-", dir="/tmp")
    )  # short: Postgres paths are limited
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


async def test_the_data_directory_is_private_after_a_stack_start_and_an_ingestion(
    data_dir, loose_umask
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "CHROMA_"))}
    env.update(
        {"PHARMGPT_DATA_DIR": str(data_dir), "PHARMGPT_SECRETS_FILE": str(data_dir / "none.toml")}
    )
    from pharmgpt.localbase.stack import LocalStack

    cli("local", "start", env=env)
    try:
        info = LocalStack(data_dir).running_gateway()
        assert info is not None
        from pharmgpt.services.container import Services

        services = await Services.create(service_settings(info, data_dir))
        try:
            user = await services.users.create_user(
                f"modes-{uuid.uuid4().hex[:8]}", "long enough pw"
            )
            doc = await services.documents.register_upload(
                user.id, "note.md", b"# Digoxin\nDigoxin toxicity causes nausea."
            )
            services.outbox.put(
                user.id, str(uuid.uuid4()), str(uuid.uuid4()), {"q": "kept while offline"}
            )
            out = cli("worker", "--once", env=worker_env(info, data_dir))
            assert "processed 1 job(s)" in out.stdout
            assert (await services.documents.get_document(user.id, doc.id)).status == "ready"
        finally:
            await services.close()
    finally:
        cli("local", "stop", env=env)
    made = {p.relative_to(data_dir).parts[0] for p in data_dir.iterdir()}
    assert {"chroma", "lexical", "blobs", "logs", "outbox.sqlite3", "localbase.json"} <= made, made
    assert (data_dir / "logs" / "gateway.log").stat().st_size > 0
    assert loose_modes(data_dir) == []
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 in (
        0,
        0o001,
    )  # o+x only as root (Postgres user)
    assert json.loads((data_dir / "localbase.json").read_text())[
        "jwt_secret"
    ]  # the keys: 0600 above
