"""PostgREST-shaped errors: the body `{code, message, details, hint}` and status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the gateway answers with, shaped like PostgREST's."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


def parse_error(message: str, details: str | None = None) -> ApiError:
    return ApiError(400, "PGRST100", message, details)


def not_found_table(schema: str, name: str) -> ApiError:
    return ApiError(
        404, "PGRST205", f"Could not find the table '{schema}.{name}' in the schema cache", None, None
    )


def unknown_column(table: str, column: str) -> ApiError:
    return ApiError(400, "42703", f"column {table}.{column} does not exist", None, None)


# SQLSTATE -> HTTP status, as PostgREST maps them
_BY_CODE = {
    "23505": 409,  # unique_violation
    "23503": 409,  # foreign_key_violation
    "23502": 400,  # not_null_violation
    "23514": 400,  # check_violation
    "22P02": 400,  # invalid_text_representation
    "22001": 400,
    "22003": 400,
    "22007": 400,
    "22008": 400,
    "22023": 400,
    "P0001": 400,  # raise_exception
    "42P01": 404,  # undefined_table
    "42883": 404,  # undefined_function
    "42703": 400,  # undefined_column
    "42P17": 500,
    "25006": 405,  # read_only_sql_transaction
    "53300": 503,  # too_many_connections
    "57P01": 503,  # admin_shutdown
    "40001": 409,  # serialization_failure
    "40P01": 409,  # deadlock_detected
}


def status_for_sqlstate(sqlstate: str | None, role: str, anon_role: str) -> int:
    if not sqlstate:
        return 500
    if sqlstate == "42501":  # insufficient_privilege
        return 401 if role == anon_role else 403
    if sqlstate in _BY_CODE:
        return _BY_CODE[sqlstate]
    if sqlstate.startswith(("08", "53", "57")):
        return 503
    if sqlstate.startswith(("22", "23")):
        return 400
    if sqlstate.startswith("42"):
        return 400
    return 500
