"""Lifecycle of the embedded server: start, status, stale pid file, stop, reset."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest
from pharmgpt.localbase.postgres import EmbeddedPostgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_lifecycle_and_stale_pidfile_recovery():
    root = Path(tempfile.mkdtemp(prefix="pgl-", dir="/tmp"))
    pg = EmbeddedPostgres(root / "d", ephemeral=True, port=0)
    try:
        st = pg.start()
        assert st.running and st.pid
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert pg.start().pid == st.pid  # idempotent
        pg.stop()
        assert not pg.status().running
        # a crash leaves postmaster.pid behind with a dead pid
        (pg.pgdata / "postmaster.pid").write_text("999999\n" + str(pg.pgdata) + "\n")
        assert not pg.status().running
        st2 = pg.start()
        assert st2.running
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                pg.dsn().replace(pg.credentials.superuser_password, "wrong"), connect_timeout=5
            )
    finally:
        pg.reset()
    assert not (root / "d").exists()
