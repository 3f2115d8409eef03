"""The status enums in services/models.py are the values the database's CHECK constraints allow:
read from pg_constraint on the real stack, so a migration changing a list fails here."""

from __future__ import annotations

import re

import psycopg
import pytest
from pharmgpt.services.models import ACTIVE_STATUSES, DocumentStatus, JobStatus

pytestmark = pytest.mark.integration


def check_values(dsn: str, table: str, column: str) -> set[str]:
    """The literals of the CHECK constraint on `table.column` (Postgres shows an IN list as
    `column = ANY (ARRAY['a'::text, ...])`)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT pg_get_constraintdef(c.oid)
                 FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (c.conkey)
                WHERE c.contype = 'c' AND n.nspname = 'public' AND t.relname = %s
                  AND a.attname = %s AND array_length(c.conkey, 1) = 1""",
            (table, column),
        ).fetchall()
    assert len(rows) == 1, rows
    return set(re.findall(r"'([^']*)'", rows[0][0]))


@pytest.mark.parametrize(
    "table, column, enum",
    [("documents", "status", DocumentStatus), ("ingest_jobs", "status", JobStatus)],
)
def test_status_enums_match_the_check_constraints(stack, table, column, enum):
    assert check_values(stack.db_uri, table, column) == {s.value for s in enum}


def test_active_statuses_are_document_statuses():
    assert ACTIVE_STATUSES == {DocumentStatus.PENDING, DocumentStatus.PROCESSING}
    assert all("pending" == s or "processing" == s for s in ACTIVE_STATUSES)
