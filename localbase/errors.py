"""PostgREST-shaped errors, and the one catalogue of codes and HTTP statuses.

Every error the gateway raises itself names a code from `CODES`, which fixes
its status, so the same failure always answers the same way. Errors from
Postgres keep their SQLSTATE as the code and get PostgREST's status for it
(`status_for_sqlstate`, after PostgREST's `mapSQLtoHTTP`).
"""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, what it means). PGRST* are PostgREST's own; LB* are
# localbase's limits, which PostgREST has no code for.
CODES: dict[str, tuple[int, str]] = {
    "PGRST000": (503, "the database could not be reached"),
    "PGRST001": (503, "database client error"),
    "PGRST002": (503, "the schema cache could not be loaded"),
    "PGRST003": (504, "timed out waiting for a database connection"),
    "PGRST100": (400, "the query string could not be parsed"),
    "PGRST102": (400, "the body is empty or not valid JSON"),
    "PGRST103": (416, "the requested range is not satisfiable"),
    "PGRST106": (406, "the schema is not exposed"),
    "PGRST107": (406, "the Accept media type is not available"),
    "PGRST108": (400, "a filter names a resource that is not embedded"),
    "PGRST116": (406, "the result is not exactly one row"),
    "PGRST117": (405, "the HTTP verb is not supported"),
    "PGRST122": (400, "a Prefer value is invalid under handling=strict"),
    "PGRST125": (404, "the path is not a resource"),
    "PGRST200": (400, "no relationship for the embed"),
    "PGRST201": (300, "more than one relationship for the embed"),
    "PGRST202": (404, "the function is not in the schema cache"),
    "PGRST204": (400, "a body column is not in the table"),
    "PGRST205": (404, "the table is not in the schema cache"),
    "PGRST301": (401, "the JWT is invalid"),
    "PGRST302": (401, "no API key or bearer token"),
    "PGRST303": (401, "the JWT claims are not acceptable (expired, audience)"),
    "PGRSTX00": (500, "internal error in the gateway"),
    "LB400": (400, "the request contains a NUL byte"),
    "LB401": (400, "the filters are nested too deeply or there are too many"),
    "LB413": (413, "the request body is larger than the limit"),
    "LB414": (414, "the query string is longer than the limit"),
    "LB429": (429, "too many requests of this user are waiting for the database"),
    "LB507": (507, "the response is larger than the limit"),
}


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
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }


def pgrst(
    code: str,
    message: str,
    details: Any = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    """An ApiError whose status comes from the catalogue."""
    return ApiError(CODES[code][0], code, message, details, hint, headers)


def parse_error(message: str, details: str | None = None) -> ApiError:
    return pgrst("PGRST100", message, details)


def not_found_table(schema: str, name: str) -> ApiError:
    return pgrst("PGRST205", f"Could not find the table '{schema}.{name}' in the schema cache")


def unknown_column(table: str, column: str) -> ApiError:
    return ApiError(400, "42703", f"column {table}.{column} does not exist", None, None)


# SQLSTATE -> HTTP status, as PostgREST maps them: exact codes first, then
# two-character classes; anything else is the client's fault (400).
_BY_CODE = {
    "23503": 409,  # foreign_key_violation
    "23505": 409,  # unique_violation
    "25006": 405,  # read_only_sql_transaction
    "53400": 500,  # configuration_limit_exceeded
    "57P01": 503,  # admin_shutdown
    "P0001": 400,  # raise_exception
    "42883": 404,  # undefined_function
    "42P01": 404,  # undefined_table
    "42P17": 500,  # infinite_recursion
}
_BY_CLASS = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
}


def status_for_sqlstate(sqlstate: str | None, role: str, anon_role: str, message: str = "") -> int:
    if not sqlstate:
        return 500
    if sqlstate == "42501":  # insufficient_privilege
        return 401 if role == anon_role else 403
    if sqlstate == "21000":  # cardinality_violation; pg-safeupdate's refusal is the client's
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "22023" and message.startswith("role") and message.endswith("does not exist"):
        return 401
    if sqlstate in _BY_CODE:
        return _BY_CODE[sqlstate]
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():  # RAISE with SQLSTATE 'PT404'
        n = int(sqlstate[2:])
        return n if 100 <= n <= 599 else 500
    return _BY_CLASS.get(sqlstate[:2], 400)
