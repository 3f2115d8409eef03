"""sql/ on a database shaped like a Supabase project (issue 11).

Applied as the non-superuser `postgres` with psql's ON_ERROR_STOP: no error,
no warning. The privileges it leaves are the same as on localbase, object by
object, and are the ones the schema means (nothing for anon or PUBLIC, the
worker's functions for service_role only). The RLS matrix and the account
services run on this database too (they carry `pytest.mark.stacks`).
"""

from __future__ import annotations

import shutil
import uuid

import psycopg
import pytest
from pharmgpt.localbase import migrations
from psycopg import sql

from tests.fixtures.privileges import GRANTEES, matrix_diff, privilege_matrix
from tests.fixtures.supabase_shape import APPLIER, ShapeApplyError, apply_with_psql, psql_path

pytestmark = pytest.mark.integration


def test_sql_applies_as_the_non_superuser_postgres_without_errors_or_warnings(supabase_shape):
    report = supabase_shape.report
    assert report is not None, "the shape was not built from scratch"
    assert report.files == [m.name for m in migrations.discover()]
    assert report.problems == [], "\n".join(report.problems)
    with psycopg.connect(supabase_shape.applier_dsn()) as conn:
        who = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
        assert who == (APPLIER, False, True, True)
        # auth's helpers stayed the other role's, and sql/ is recorded for `pharmgpt db migrate`
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc "
            "WHERE pronamespace = 'auth'::regnamespace"
        ).fetchall()
        assert owners == [("supabase_auth_admin",)]
        recorded = [n for _, n in migrations.applied(supabase_shape.applier_dsn())]
        assert recorded == report.files
    assert migrations.apply(supabase_shape.applier_dsn()) == []


def test_the_gateway_connects_as_authenticator(supabase_shape):
    with psycopg.connect(supabase_shape.info.db_uri) as conn:
        users = {
            r[0]
            for r in conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE application_name <> 'psql' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        }
        role = conn.execute(
            "SELECT rolsuper, rolinherit, rolcanlogin FROM pg_roles WHERE rolname = 'authenticator'"
        ).fetchone()
    assert users == {"authenticator"}
    assert role == (False, False, True)


def test_the_shape_catches_warnings_and_role_grants(supabase_shape, tmp_path):
    """The shape is strict where Supabase is: what sql/0001 used to do warns or fails here."""
    (tmp_path / "0001_probe.sql").write_text("GRANT USAGE ON SCHEMA auth TO anon;\n")
    report = apply_with_psql(psql_path(supabase_shape.pg), supabase_shape.applier_dsn(), tmp_path)
    assert any("WARNING" in m and "no privileges were granted" in m for m in report.problems)
    (tmp_path / "0001_probe.sql").write_text("GRANT anon TO authenticator;\n")
    with pytest.raises(ShapeApplyError, match="ADMIN option"):
        apply_with_psql(psql_path(supabase_shape.pg), supabase_shape.applier_dsn(), tmp_path)


def _line(matrix: list[str], prefix: str) -> list[str]:
    return [m for m in matrix if m.startswith(prefix)]


def test_privileges_are_the_same_on_supabase_and_on_localbase(supabase_shape, localbase_stack):
    shape = privilege_matrix(supabase_shape.applier_dsn())
    local = privilege_matrix(localbase_stack.db_uri)
    assert shape == local, "privileges differ:\n" + matrix_diff(
        local, shape, "localbase", "supabase_shape"
    )

    # and they are the ones the schema means
    public_objects = [
        m
        for m in shape
        if m.split(" ", 1)[0] in ("table", "column", "sequence", "function") and " public." in m
    ]
    assert len({m.split(":")[0] for m in public_objects}) > 40
    for grantee in ("anon", "public"):
        exposed = [m for m in public_objects if f": {grantee}=" in m and not m.endswith("=")]
        assert exposed == [], f"{grantee} may use: {exposed}"
    assert [m for m in shape if m.startswith("sequence ") and not m.endswith("=")] == [
        "sequence public.audit_log_id_seq: service_role=SELECT,USAGE"
    ]
    assert _line(shape, "function public.claim_ingest_job(") == [
        f"function public.claim_ingest_job(worker text, stale_after interval): {g}="
        + ("EXECUTE" if g == "service_role" else "")
        for g in sorted(GRANTEES)
    ]
    assert _line(shape, "function public.search_conversations(") == [
        f"function public.search_conversations(query text, max_results integer): {g}="
        + ("EXECUTE" if g in ("authenticated", "service_role") else "")
        for g in sorted(GRANTEES)
    ]
    assert "table public.schema_migrations: service_role=" in shape
    # a trigger function is nobody's to call (the account-deletion one is SECURITY DEFINER)
    for trigger in ("touch_updated_at", "pharmacy_hand_over_on_account_deletion"):
        granted = _line(shape, f"function public.{trigger}()")
        assert granted and [m for m in granted if not m.endswith("=")] == []


def test_objects_created_later_are_not_exposed(supabase_shape):
    """Supabase's default privileges would grant a new table, function and sequence to every
    API role; after sql/ they grant nothing, and PUBLIC may not execute a new function."""
    name = f"later_{uuid.uuid4().hex[:8]}"
    dsn = supabase_shape.applier_dsn()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE public.{} (id bigint GENERATED ALWAYS AS IDENTITY)").format(
                sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL("CREATE FUNCTION public.{}() RETURNS int LANGUAGE sql AS 'SELECT 1'").format(
                sql.Identifier(name)
            )
        )
        try:
            rows = conn.execute(
                """SELECT g, has_table_privilege(g, %(t)s, 'SELECT'),
                          has_function_privilege(g, %(f)s, 'EXECUTE'),
                          has_sequence_privilege(g, pg_get_serial_sequence(%(t)s, 'id'), 'USAGE')
                     FROM unnest(%(g)s::text[]) g""",
                {"t": f"public.{name}", "f": f"public.{name}()", "g": list(GRANTEES)},
            ).fetchall()
        finally:
            conn.rollback()
    assert rows == [(g, False, False, False) for g in GRANTEES]


@pytest.fixture
def empty_db(localbase_stack):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(localbase_stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield localbase_stack.db_uri.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(localbase_stack.db_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_an_existing_database_ends_with_the_same_privileges(empty_db, localbase_stack, tmp_path):
    """A data dir from before issue 11: every file but 0010 applied, and 0001 recorded with its
    old checksum. The runner accepts the revised 0001 and 0010 brings it where a fresh one is."""
    later = []  # 0010, and files written after issue 11 that such a data dir has not seen either
    for mig in migrations.discover():
        if mig.version != "0010" and mig.version <= "0023":
            shutil.copy(migrations.shipped_sql_dir() / mig.name, tmp_path / mig.name)
        else:
            later.append(mig.version)
    migrations.apply(empty_db, tmp_path)
    (old_checksum,) = migrations.REVISED["0001"]
    with psycopg.connect(empty_db) as conn:
        conn.execute(
            "UPDATE public.schema_migrations SET checksum = %s WHERE version = '0001'",
            (old_checksum,),
        )
    assert [n[:4] for n in migrations.apply(empty_db)] == later
    with psycopg.connect(empty_db) as conn:
        recorded = conn.execute(
            "SELECT checksum FROM public.schema_migrations WHERE version = '0001'"
        ).fetchone()[0]
    assert recorded == next(m.checksum for m in migrations.discover() if m.version == "0001")
    fresh = privilege_matrix(localbase_stack.db_uri)
    upgraded = privilege_matrix(empty_db)
    assert upgraded == fresh, matrix_diff(fresh, upgraded, "fresh", "upgraded")


def test_0001_names_the_grant_it_cannot_give(supabase_shape, tmp_path):
    """A project whose `auth` schema lacks the usual grant: 0001 stops with the GRANT to ask for."""
    name = f"noauth_{uuid.uuid4().hex[:8]}"
    admin = supabase_shape.info.db_uri
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_admin = admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(db_admin, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin")
            for fn, typ in (("uid", "uuid"), ("role", "text"), ("jwt", "jsonb")):
                conn.execute(
                    f"CREATE FUNCTION auth.{fn}() RETURNS {typ}"
                    f" LANGUAGE sql AS 'SELECT NULL::{typ}'"
                )
                conn.execute(f"ALTER FUNCTION auth.{fn}() OWNER TO supabase_auth_admin")
            conn.execute("GRANT USAGE ON SCHEMA auth TO postgres")  # but not to the API roles
        shutil.copy(migrations.shipped_sql_dir() / "0001_roles_and_auth.sql", tmp_path)
        with pytest.raises(ShapeApplyError) as e:
            apply_with_psql(
                psql_path(supabase_shape.pg), supabase_shape.applier_dsn(name), tmp_path
            )
        assert "role anon has no USAGE on schema auth, and postgres may not grant it" in str(
            e.value
        )
        assert "GRANT USAGE ON SCHEMA auth TO anon" in str(e.value)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_runner_applies_sql_as_postgres_too(supabase_shape):
    """`pharmgpt db migrate` straight onto a fresh project: no warning, the same privileges."""
    name = f"runner_{uuid.uuid4().hex[:8]}"
    supabase_shape.bootstrap_database(name)
    try:
        notices: list[str] = []
        applied = migrations.apply(
            supabase_shape.applier_dsn(name),
            on_notice=lambda d: notices.append(f"{d.severity_nonlocalized}: {d.message_primary}"),
        )
        assert applied == [m.name for m in migrations.discover()]
        assert [n for n in notices if not n.startswith("NOTICE")] == []
        assert any(n.startswith("NOTICE") for n in notices)  # the handler hears the server
        by_runner = privilege_matrix(supabase_shape.applier_dsn(name))
        by_psql = privilege_matrix(supabase_shape.applier_dsn())
        assert by_runner == by_psql, matrix_diff(by_psql, by_runner, "psql", "runner")
    finally:
        with psycopg.connect(supabase_shape.info.db_uri, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
