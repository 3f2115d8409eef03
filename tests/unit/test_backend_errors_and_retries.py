"""services/backend.py: which errors are transient, what each maps to, and the retry rule
(DESIGN §4: only idempotent calls are retried, never a 4xx).

The retry tests run the REAL supabase/postgrest client; only its httpx transport is replaced by
an `httpx.MockTransport` that answers from a script and counts the requests it sees, so what is
counted is what would have reached the API.
"""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from pharmgpt.services.backend import Backend, is_transient, map_error
from pharmgpt.services.config import Settings
from pharmgpt.services.errors import (
    AuthError,
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    PharmGPTError,
    ValidationError,
)
from postgrest.exceptions import APIError

ATTEMPTS = 3


def api_error(code: str | None, message: str = "m") -> APIError:
    return APIError({"code": code, "message": message, "details": "d", "hint": "h"})


REQUEST = httpx.Request("GET", "http://backend.test/rest/v1/x")


def name(value) -> str:
    """A readable test id: the error's class and code."""
    if isinstance(value, APIError):
        return f"APIError-{value.code}"
    if isinstance(value, tuple):
        return f"{value[0]}-{value[1]['code']}"
    return type(value).__name__ if isinstance(value, Exception) else ""


TRANSIENT = [
    httpx.ConnectError("refused", request=REQUEST),
    httpx.ReadTimeout("slow", request=REQUEST),
    httpx.RemoteProtocolError("cut", request=REQUEST),
    *(
        api_error(c)
        for c in (
            "PGRST000",
            "PGRST001",
            "PGRST002",
            "PGRST003",
            "500",
            "502",
            "503",
            "504",
            "520",
            "40001",
            "40P01",
            "57P01",
            "53300",
        )
    ),
]
NOT_TRANSIENT = [
    *(
        api_error(c)
        for c in (
            "PGRST116",
            "PGRST301",
            "PGRST100",
            "23505",
            "23503",
            "42501",
            "P0001",
            "400",
            "401",
            "403",
            "404",
            "409",
            "XX000",
            "",
            None,
        )
    ),
    ValueError("not a backend error"),
    httpx.HTTPStatusError("404", request=REQUEST, response=httpx.Response(404, request=REQUEST)),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=name)
def test_transient_errors(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", NOT_TRANSIENT, ids=name)
def test_errors_that_are_not_transient(exc):
    assert not is_transient(exc)


MAPPED = [
    # (error, typed class, words the page shows)
    (httpx.ConnectError("refused", request=REQUEST), BackendUnavailable, "not reachable"),
    (api_error("PGRST000"), BackendUnavailable, "not reachable"),
    (api_error("503"), BackendUnavailable, "not reachable"),
    (api_error("40001"), BackendUnavailable, "not reachable"),
    (api_error("PGRST116"), NotFound, "The note was not found."),
    (api_error("P0002"), NotFound, "not found"),
    (api_error("PGRST205"), NotFound, "not found"),
    (api_error("PGRST202"), NotFound, "not found"),
    (api_error("23503"), NotFound, "not found"),
    (api_error("23505"), Conflict, "That note already exists."),
    (api_error("42501"), Forbidden, "not allowed"),
    (api_error("PGRST301"), AuthError, "sign in again"),
    (api_error("PGRST302"), AuthError, "sign in again"),
    (api_error("PGRST303"), AuthError, "sign in again"),
    *(
        (api_error(c, "too long"), ValidationError, "The note was not accepted: too long")
        for c in (
            "23502",
            "23514",
            "22P02",
            "22001",
            "22003",
            "22007",
            "22008",
            "22023",
            "PGRST100",
            "PGRST102",
            "PGRST204",
            "P0001",
        )
    ),
    (api_error("XX000"), PharmGPTError, "The data store refused the note."),
    (api_error(None), PharmGPTError, "The data store refused the note."),
    (ValueError("boom"), PharmGPTError, "Unexpected error during note"),
]


@pytest.mark.parametrize(("exc", "typed", "words"), MAPPED, ids=name)
def test_map_error_gives_one_typed_error_per_kind(exc, typed, words):
    err = map_error(exc, "note")
    assert type(err) is typed and words in err.message
    if isinstance(exc, APIError) and typed is not BackendUnavailable:
        assert err.details == {
            "code": exc.code or "",
            "message": exc.message,
            "details": "d",
            "hint": "h",
        }
    else:
        assert repr(exc) in str(err.details)  # the raw error stays in details, for the logs


def test_map_error_keeps_a_typed_error_as_it_is():
    err = Conflict("already typed")
    assert map_error(err) is err


# --- the retry rule, through the real client -------------------------------------------------


class ScriptedAPI:
    """An httpx transport answering each request with the next scripted reply (the last repeats)."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        status, body = reply
        return httpx.Response(status, json=body, request=request)


def fail(status: int, code: str) -> tuple[int, dict]:
    return status, {"code": code, "message": f"scripted {code}", "details": None, "hint": None}


OK_ROWS = (200, [{"id": 1}])
OK_CREATED = (201, [{"id": 1}])


@pytest.fixture
async def backend_for():
    """A started Backend whose one HTTP pool (shared by every client it makes) goes to `api`."""
    made: list[Backend] = []

    async def make(api: ScriptedAPI) -> Backend:
        settings = Settings(
            supabase_url="http://backend.test",
            supabase_anon_key="sb_publishable_test",
            supabase_service_role_key="sb_secret_test",
            supabase_jwt_secret="s" * 40,
            retry_attempts=ATTEMPTS,
            retry_max_wait_s=0.01,
        )
        backend = Backend(settings)
        backend._http = httpx.AsyncClient(transport=httpx.MockTransport(api))
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for b in made:
        await b.close()


def rest_calls(api: ScriptedAPI) -> list[tuple[str, str]]:
    return [(r.method, r.url.path) for r in api.requests]


WRITES = {
    "insert": lambda t: t.insert({"note": "x"}),
    "update": lambda t: t.update({"note": "x"}).eq("id", 1),
    "delete": lambda t: t.delete().eq("id", 1),
    "upsert": lambda t: t.upsert({"id": 1, "note": "x"}),
}


@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize(
    "reply",
    [fail(503, "PGRST000"), fail(500, "40001"), fail(502, "502"), httpx.ConnectError("refused")],
    ids=name,
)
async def test_a_non_idempotent_call_is_tried_once_even_when_the_error_is_transient(
    backend_for, write, reply
):
    api = ScriptedAPI(reply, OK_CREATED)
    backend = await backend_for(api)
    with pytest.raises(BackendUnavailable):
        await backend.execute(
            WRITES[write](backend.service.table("notes")), what="note", idempotent=False
        )
    assert len(api.requests) == 1


async def test_a_non_idempotent_rpc_is_tried_once(backend_for):
    api = ScriptedAPI(fail(503, "PGRST001"), OK_ROWS)
    backend = await backend_for(api)
    with pytest.raises(BackendUnavailable):
        await backend.execute(backend.service.rpc("claim_job", {"n": 1}), idempotent=False)
    assert rest_calls(api) == [("POST", "/rest/v1/rpc/claim_job")]


@pytest.mark.parametrize(
    ("reply", "typed"),
    [
        (fail(400, "PGRST100"), ValidationError),
        (fail(401, "PGRST301"), AuthError),
        (fail(403, "42501"), Forbidden),
        (fail(404, "PGRST205"), NotFound),
        (fail(406, "PGRST116"), NotFound),
        (fail(409, "23505"), Conflict),
        (fail(400, "23514"), ValidationError),
        (fail(429, "429"), PharmGPTError),
    ],
)
async def test_a_4xx_is_never_retried_even_on_an_idempotent_call(backend_for, reply, typed):
    api = ScriptedAPI(reply, OK_ROWS)
    backend = await backend_for(api)
    with pytest.raises(typed):
        await backend.execute(backend.service.table("notes").select("*").eq("id", 1), what="note")
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        fail(503, "PGRST000"),
        fail(500, "40P01"),
        fail(504, "504"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=name,
)
async def test_a_transient_error_on_an_idempotent_call_is_retried_until_it_succeeds(
    backend_for, reply
):
    api = ScriptedAPI(reply, reply, OK_ROWS)
    backend = await backend_for(api)
    r = await backend.execute(backend.service.table("notes").select("*"), what="note")
    assert r.data == [{"id": 1}] and len(api.requests) == 3
    assert len(set(rest_calls(api))) == 1  # the same request, repeated


async def test_retries_stop_at_the_configured_attempts(backend_for):
    api = ScriptedAPI(fail(503, "PGRST002"))
    backend = await backend_for(api)
    with pytest.raises(BackendUnavailable):
        await backend.execute(backend.service.table("notes").select("*"), what="note")
    assert len(api.requests) == ATTEMPTS


async def test_a_user_client_follows_the_same_rule(backend_for):
    api = ScriptedAPI(fail(503, "PGRST000"), OK_ROWS)
    backend = await backend_for(api)
    mine = await backend.for_user("00000000-0000-0000-0000-000000000001")
    r = await backend.execute(mine.table("notes").select("*"))
    assert r.data == [{"id": 1}] and len(api.requests) == 2
    auth = {req.headers["authorization"] for req in api.requests}
    assert len(auth) == 1 and auth != {"Bearer sb_secret_test"}  # the user's own token, both times

    api.replies, api.requests = [fail(503, "PGRST000"), OK_CREATED], []
    with pytest.raises(BackendUnavailable):
        await backend.execute(mine.table("notes").insert({"note": "x"}), idempotent=False)
    assert len(api.requests) == 1


async def test_paged_reads_retry_each_page(backend_for):
    api = ScriptedAPI(fail(503, "PGRST000"), (200, [{"id": 1}, {"id": 2}]), (200, [{"id": 3}]))
    backend = await backend_for(api)
    backend.settings = dataclasses.replace(backend.settings, db_max_rows=2)
    rows = await backend.fetch_rows(lambda: backend.service.table("notes").select("*").order("id"))
    assert rows == [{"id": 1}, {"id": 2}, {"id": 3}] and len(api.requests) == 3
    pages = [(r.url.params.get("offset"), r.url.params.get("limit")) for r in api.requests]
    assert pages == [("0", "2"), ("0", "2"), ("2", "2")]
