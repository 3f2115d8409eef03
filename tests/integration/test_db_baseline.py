"""`pharmgpt db migrate` after a schema applied by hand (the README's psql route).

Without --baseline it explains what to do (no traceback, nothing applied);
with it, the files are recorded and later runs apply only newer ones. A
half-applied schema is refused instead of recorded.
"""

from __future__ import annotations

import shutil
import uuid

import psycopg
import pytest
from psycopg import sql

from localbase import migrations
from localbase.postgres import EmbeddedPostgres
from services.cli import main
from tests.fixtures.supabase_shape import apply_with_psql

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_db(localbase_stack):
    name = f"base_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(localbase_stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield localbase_stack.db_uri.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(localbase_stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def by_hand(dsn: str, sql_dir=migrations.SQL_DIR) -> list[str]:
    psql = EmbeddedPostgres("/nonexistent").bindir / "psql"
    report = apply_with_psql(psql, dsn, sql_dir)
    assert report.problems == []
    return report.files


def recorded(dsn: str) -> list[str]:
    return [n for _, n in migrations.applied(dsn)]


def test_migrate_after_psql_explains_baseline_then_records_it(empty_db, capsys):
    names = by_hand(empty_db)
    assert main(["db", "migrate", "--db-uri", empty_db]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "already exists" in out.err
    assert "pharmgpt db migrate --baseline" in out.err
    assert recorded(empty_db) == []

    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline"]) == 0
    assert "recorded as applied: " + ", ".join(names) in capsys.readouterr().out
    assert recorded(empty_db) == names
    assert main(["db", "migrate", "--db-uri", empty_db]) == 0
    assert "schema is up to date" in capsys.readouterr().out
    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline"]) == 0
    assert "nothing to record" in capsys.readouterr().out


def test_baseline_refuses_a_half_applied_schema_and_through_records_part(empty_db, tmp_path, capsys):
    for mig in migrations.discover():
        if mig.version <= "0005":
            shutil.copy(migrations.SQL_DIR / mig.name, tmp_path / mig.name)
    by_hand(empty_db, tmp_path)
    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline"]) == 2
    err = capsys.readouterr().err
    assert "not fully applied" in err and "table public.migration_runs" in err
    assert recorded(empty_db) == []

    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline", "--through", "0005"]) == 0
    assert recorded(empty_db) == sorted(p.name for p in tmp_path.glob("*.sql"))
    capsys.readouterr()
    assert main(["db", "migrate", "--db-uri", empty_db]) == 0  # the rest, by the runner
    assert recorded(empty_db) == [m.name for m in migrations.discover()]


def test_baseline_of_an_empty_database_and_bad_arguments(empty_db, capsys):
    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline"]) == 2
    assert "nothing to baseline" in capsys.readouterr().err
    assert main(["db", "migrate", "--db-uri", empty_db, "--through", "0005"]) == 2
    assert "--through goes with --baseline" in capsys.readouterr().err
    assert main(["db", "migrate", "--db-uri", empty_db, "--baseline", "--through", "9999"]) == 2
    assert "no sql/9999_*.sql" in capsys.readouterr().err
    bad = empty_db.rsplit("/", 1)[0] + "/no_such_database_here"
    assert main(["db", "migrate", "--db-uri", bad]) == 2
    assert "cannot connect" in capsys.readouterr().err
