"""Apply `sql/NNNN_name.sql` files in order, once each.

Each file runs in its own transaction and is recorded in
`public.schema_migrations` with its checksum; an advisory lock keeps two
runners from racing. A file that changed after it was applied is an error,
not something to re-run silently (except the few revised in place, listed in
REVISED with the checksums they replace: their effect on a database that ran
the old text is the same, so the record is brought up to date).

A schema applied by hand (psql, the SQL editor) has no record; `baseline()`
checks that its tables and functions are there and records the files, so
later runs apply only what is new.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x5048_4152  # "PHAR"


class MigrationError(RuntimeError):
    pass


class UnrecordedSchemaError(MigrationError):
    """The schema is there but `schema_migrations` does not say so (it was applied by hand)."""


# Files edited after release, with the checksums of the texts they replace. Each
# edit must leave a database that ran the old text as if it had run the new one.
REVISED: dict[str, frozenset[str]] = {
    # issue 11: grants only where missing, so it applies as Supabase's `postgres`
    "0001": frozenset({"4401a6664174181a7d4c1449fa86dc10776b6365ca034bed44eeb150055f4ae7"}),
}


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_sql_dir() -> Path:
    """The `sql/` folder as installed: package data of `pharmgpt.sql` (a checkout or a wheel)."""
    return Path(str(importlib.resources.files("pharmgpt.sql")))


def sql_files(sql_dir: Path | None = None) -> list[Path]:
    """The migration files in order: those in `sql_dir`, else the ones PharmGPT ships.

    The one place that knows where the shipped files are."""
    return sorted((shipped_sql_dir() if sql_dir is None else sql_dir).glob("*.sql"))


def discover(sql_dir: Path | None = None) -> list[Migration]:
    found = []
    for path in sql_files(sql_dir):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        found.append(Migration(m.group(1), path.name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(
            f"two migration files share a number in {sql_dir or shipped_sql_dir()}"
        )
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
  version    text PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.schema_migrations ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.schema_migrations FROM PUBLIC;
DO $$
DECLARE
  r text;
BEGIN
  -- under Supabase's default privileges a new table is granted to the API roles
  FOR r IN SELECT rolname FROM pg_roles
            WHERE rolname IN ('anon', 'authenticated', 'service_role') LOOP
    EXECUTE format('REVOKE ALL ON public.schema_migrations FROM %I', r);
  END LOOP;
END
$$;
"""

_HAND_APPLIED_HINT = (
    "this database already has PharmGPT's schema (public.users exists) but no record of "
    "which sql/ files were applied (public.schema_migrations is empty), so applying them "
    "again would fail with 'already exists'. If you applied sql/ by hand (README: "
    "'Applying the schema'), record it once with `pharmgpt db migrate --baseline` "
    "(add `--through NNNN` if you applied only the files up to NNNN); later runs of "
    "`pharmgpt db migrate` then apply only newer files."
)


def apply(
    dsn: str,
    sql_dir: Path | None = None,
    on_notice: Callable[[psycopg.errors.Diagnostic], None] | None = None,
) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date).

    `on_notice` receives every NOTICE/WARNING the server sends while applying.
    """
    migrations = discover(sql_dir)
    applied_now: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        if on_notice is not None:
            conn.add_notice_handler(on_notice)
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_BOOKKEEPING)
            done = dict(
                conn.execute("SELECT version, checksum FROM public.schema_migrations").fetchall()
            )
            if not done and _has_schema(conn):
                raise UnrecordedSchemaError(_HAND_APPLIED_HINT)
            for mig in migrations:
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        if done[mig.version] not in REVISED.get(mig.version, ()):
                            raise MigrationError(
                                f"{mig.name} changed after it was applied; "
                                "add a new migration instead"
                            )
                        conn.execute(
                            "UPDATE public.schema_migrations SET checksum = %s WHERE version = %s",
                            (mig.checksum, mig.version),
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(mig.sql)
                        conn.execute(
                            "INSERT INTO public.schema_migrations (version, name, checksum)"
                            " VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum),
                        )
                except psycopg.Error as e:
                    hint = ""
                    if isinstance(
                        e,
                        (
                            psycopg.errors.DuplicateTable,
                            psycopg.errors.DuplicateObject,
                            psycopg.errors.DuplicateFunction,
                        ),
                    ):
                        hint = (
                            " (was this file applied by hand? then record it with "
                            "`pharmgpt db migrate --baseline --through " + mig.version + "`)"
                        )
                    raise MigrationError(f"{mig.name}: {e}{hint}") from e
                applied_now.append(mig.name)
            if applied_now:
                # PostgREST (and localbase's gateway) reload their schema cache on this
                conn.execute("NOTIFY pgrst, 'reload schema'")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _has_schema(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('public.users') IS NOT NULL").fetchone()[0]


_CREATES_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?public\.(\w+)", re.I)
_CREATES_FUNCTION = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+public\.(\w+)", re.I)
_DROPS_FUNCTION = re.compile(r"DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?public\.(\w+)", re.I)


def baseline(dsn: str, sql_dir: Path | None = None, through: str | None = None) -> list[str]:
    """Record sql/ files (all, or up to version `through`) as applied without running them.

    For a schema applied by hand: first checks that every table and function those
    files create exists, so a half-applied schema is refused instead of recorded.
    Returns the names newly recorded.
    """
    migrations = discover(sql_dir)
    if through is not None:
        if through not in {m.version for m in migrations}:
            raise MigrationError(f"--through {through}: no sql/{through}_*.sql file")
        migrations = [m for m in migrations if m.version <= through]
    tables: set[str] = set()
    functions: set[str] = set()
    for mig in migrations:
        tables.update(_CREATES_TABLE.findall(mig.sql))
        functions.update(_CREATES_FUNCTION.findall(mig.sql))
        # a function a file drops by name is gone unless a later one recreates it
        functions.difference_update(
            set(_DROPS_FUNCTION.findall(mig.sql)) - set(_CREATES_FUNCTION.findall(mig.sql))
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            if not _has_schema(conn):
                raise MigrationError(
                    "nothing to baseline: this database has no PharmGPT schema (no public.users); "
                    "run `pharmgpt db migrate` without --baseline to apply sql/"
                )
            missing_tables = [
                t
                for t in sorted(tables)
                if conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)).fetchone()[0] is None
            ]
            present = {
                r[0]
                for r in conn.execute(
                    "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
                ).fetchall()
            }
            missing_functions = sorted(functions - present)
            if missing_tables or missing_functions:
                raise MigrationError(
                    "the schema is not fully applied, so it was not recorded; missing: "
                    + ", ".join(
                        [f"table public.{t}" for t in missing_tables]
                        + [f"function public.{f}" for f in missing_functions]
                    )
                    + ". Apply the missing sql/ files first (README: 'Applying the schema')"
                )
            conn.execute(_BOOKKEEPING)
            recorded = []
            with conn.transaction():
                for mig in migrations:
                    cur = conn.execute(
                        "INSERT INTO public.schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s) ON CONFLICT (version) DO NOTHING",
                        (mig.version, mig.name, mig.checksum),
                    )
                    if cur.rowcount:
                        recorded.append(mig.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return recorded


def applied(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]
        if not exists:
            return []
        return conn.execute(
            "SELECT version, name FROM public.schema_migrations ORDER BY version"
        ).fetchall()
