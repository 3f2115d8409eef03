"""`pharmgpt db migrate` after a schema applied by hand (the README's psql route).

Without --baseline it explains what to do (no traceback, nothing applied);
with it, the files are recorded and later runs apply only newer ones. A
half-applied schema is refused instead of recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from pharmgpt.cli import main
from pharmgpt.localbase import migrations
from pharmgpt.localbase.postgres import EmbeddedPostgres
from psycopg import sql

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


def by_hand(dsn: str, sql_dir=None) -> list[str]:
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


def test_baseline_refuses_a_half_applied_schema_and_through_records_part(
    empty_db, tmp_path, capsys
):
    for mig in migrations.discover():
        if mig.version <= "0005":
            shutil.copy(migrations.shipped_sql_dir() / mig.name, tmp_path / mig.name)
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


ROOT = Path(__file__).resolve().parents[2]


def readme_route() -> str:
    """The bash block between the apply-route markers in README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- apply-route -->", 1)[1].split("<!-- /apply-route -->", 1)[0]
    return textwrap.dedent(block.split("```bash", 1)[1].split("```", 1)[0])


def run_route(cwd: Path, dsn: str) -> subprocess.CompletedProcess:
    bindir = EmbeddedPostgres("/nonexistent").bindir
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(DATABASE_URL=dsn, PATH=f"{bindir}:{env.get('PATH', '')}")
    return subprocess.run(
        ["bash", "-c", readme_route()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_the_readme_route_applies_and_records_the_schema(empty_db):
    proc = run_route(ROOT, empty_db)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr
    assert recorded(empty_db) == [m.name for m in migrations.discover()]


def test_the_readme_route_stops_at_the_first_failing_file(empty_db, tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "0001_a.sql").write_text("CREATE TABLE public.route_a (id int);\n")
    (tmp_path / "sql" / "0002_b.sql").write_text(
        "CREATE TABLE public.route_b (id int);\nSELECT 1/0;\n"
    )
    (tmp_path / "sql" / "0003_c.sql").write_text("CREATE TABLE public.route_c (id int);\n")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    proc = run_route(tmp_path, empty_db)
    assert proc.returncode != 0 and "division by zero" in proc.stderr
    with psycopg.connect(empty_db) as conn:
        made = [
            conn.execute("SELECT to_regclass(%s)", (f"public.route_{x}",)).fetchone()[0]
            for x in "abc"
        ]
    assert made == ["route_a", None, None]  # b rolled back whole, c never run
