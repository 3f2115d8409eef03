"""The gateway's limits on the real stack (issue 12 item 5, issue 11 item 5): per-role
statement timeouts, cancelling abandoned queries, a pool share per user and a /health of
its own, max-rows (services still page correctly under it), a response-size cap, bounded
filters, NUL bytes, JWT time claims, PostgREST's SQLSTATE statuses, lenient/strict
Prefer and the API root."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import httpx
import psycopg
import pytest
import pytest_asyncio
from postgrest.exceptions import APIError

from tests.conftest import client_for, service_settings, user_token

pytestmark = pytest.mark.integration

# backreferences make Postgres's regex engine backtrack: over 1,000 characters this runs
# for minutes, so only a timeout or a cancel ends it
SLOW = r"^(.*)(.*)(.*)\3\2\1$"
LONG = "a" * 1000 + "b"

FUNCTIONS_SQL = r"""
CREATE OR REPLACE FUNCTION gwtest.show_timeout() RETURNS text
  LANGUAGE sql STABLE AS $$ SELECT current_setting('statement_timeout') $$;
CREATE OR REPLACE FUNCTION gwtest.slow_match(subject text) RETURNS boolean
  LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN subject ~ '^(.*)(.*)(.*)\3\2\1$'; END $$;
CREATE OR REPLACE FUNCTION gwtest.raise_state(state text) RETURNS integer
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'raised %', state USING ERRCODE = state; END $$;
GRANT EXECUTE ON FUNCTION gwtest.show_timeout(), gwtest.slow_match(text), gwtest.raise_state(text)
  TO anon, authenticated, service_role;
NOTIFY pgrst, 'reload schema';
"""

ACTIVE_SQL = """SELECT count(*) FROM pg_stat_activity
                 WHERE usename = 'authenticator' AND state = 'active'
                   AND backend_type = 'client backend'"""


def headers(stack, token: str | None = None, **extra) -> dict[str, str]:
    # the secret key goes in both headers (an opaque bearer must repeat the apikey); a user JWT
    # rides with the publishable key
    apikey = stack.service_role_key if token == stack.service_role_key else stack.anon_key
    h = {"apikey": apikey, "Authorization": f"Bearer {token or apikey}"}
    return {**h, **extra}


def active_queries(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(ACTIVE_SQL).fetchone()[0]


def cancel_all(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename = 'authenticator'"
            " AND state = 'active' AND backend_type = 'client backend'"
        )


async def wait_for(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def functions(stack, superuser_dsn):
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        c.execute(FUNCTIONS_SQL)
    deadline = time.monotonic() + 20
    while True:  # the gateway reloads its schema cache on NOTIFY
        r = httpx.post(
            f"{stack.url}/rest/v1/rpc/show_timeout",
            headers=headers(stack, stack.service_role_key, **{"Content-Profile": "gwtest"}),
            json={},
        )
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    yield
    cancel_all(superuser_dsn)  # on the old code, nothing else ever stops the slow queries


@pytest.fixture(autouse=True)
def _no_leftover_queries(superuser_dsn):
    yield
    cancel_all(superuser_dsn)


@pytest_asyncio.fixture
async def flooder(make_user):
    """A user with one long message of their own, for slow regexes over their own rows."""
    user = await make_user("flood")
    conv = str(uuid.uuid4())
    await user.client.table("conversations").insert({"id": conv, "user_id": user.id}).execute()
    await (
        user.client.table("messages")
        .insert({"conversation_id": conv, "user_id": user.id, "role": "user", "content": LONG})
        .execute()
    )
    return user


def slow_params() -> dict[str, str]:
    return {"select": "id", "content": f"match.{SLOW}"}


# ---------------------------------------------------------------------- per-role settings
def test_role_timeouts_are_role_settings(superuser_dsn):
    with psycopg.connect(superuser_dsn) as c:
        rows = dict(
            c.execute(
                """SELECT r.rolname, s.setconfig FROM pg_db_role_setting s
                     JOIN pg_roles r ON r.oid = s.setrole
                    WHERE r.rolname IN ('anon', 'authenticated', 'service_role')"""
            ).fetchall()
        )
    assert "statement_timeout=3s" in rows["anon"]
    assert "statement_timeout=8s" in rows["authenticated"]
    assert not any(c.startswith("statement_timeout") for c in rows.get("service_role") or [])


async def test_each_request_runs_with_the_claimed_roles_timeout(stack, functions, make_user):
    user = await make_user("tmo")
    got = {}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        for role, token in [
            ("anon", None),
            ("authenticated", user.token),
            ("service_role", stack.service_role_key),
        ]:
            r = await http.post(
                "/rest/v1/rpc/show_timeout",
                json={},
                headers=headers(stack, token, **{"Content-Profile": "gwtest"}),
            )
            assert r.status_code == 200, r.text
            got[role] = r.json()
    assert got == {"anon": "3s", "authenticated": "8s", "service_role": "0"}


async def test_a_slow_anon_query_ends_at_the_role_timeout_with_postgrests_status(stack, functions):
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as http:
        r = await http.post(
            "/rest/v1/rpc/slow_match",
            json={"subject": LONG},
            headers=headers(stack, **{"Content-Profile": "gwtest"}),
        )
    assert r.status_code == 500
    assert r.json()["code"] == "57014"  # query_canceled: statement timeout


# ---------------------------------------------------------------------- cancelling and fairness
async def test_an_abandoned_query_is_cancelled_in_postgres(stack, superuser_dsn, flooder):
    async with httpx.AsyncClient(base_url=stack.url, timeout=1.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(
                "/rest/v1/messages", params=slow_params(), headers=headers(stack, flooder.token)
            )
    # well before the authenticated role's 8 s timeout would have ended it
    await wait_for(lambda: active_queries(superuser_dsn) == 0, 4, "the abandoned query stops")


async def test_a_slow_regex_flood_leaves_health_and_other_users_served(
    stack, superuser_dsn, flooder, make_user
):
    calm = await make_user("calm")
    conv = str(uuid.uuid4())
    await calm.client.table("conversations").insert({"id": conv, "user_id": calm.id}).execute()
    async with httpx.AsyncClient(
        base_url=stack.url, timeout=4, limits=httpx.Limits(max_connections=20)
    ) as http:
        flood = [
            asyncio.create_task(
                http.get(
                    "/rest/v1/messages", params=slow_params(), headers=headers(stack, flooder.token)
                )
            )
            for _ in range(12)
        ]  # more than the pool's 10 connections
        await wait_for(lambda: active_queries(superuser_dsn) >= 3, 10, "the flood reaches Postgres")
        async with httpx.AsyncClient(base_url=stack.url, timeout=1.0) as quick:
            health = await quick.get("/health")
            other = await quick.get(
                "/rest/v1/conversations",
                params={"select": "id"},
                headers=headers(stack, calm.token),
            )
        assert health.status_code == 200
        assert other.status_code == 200 and other.json() == [{"id": conv}]
        assert active_queries(superuser_dsn) <= 4  # the flooder's share of the pool
        results = await asyncio.gather(*flood, return_exceptions=True)
    assert all(isinstance(r, httpx.TimeoutException) for r in results)
    await wait_for(lambda: active_queries(superuser_dsn) == 0, 4, "the abandoned flood stops")


# ---------------------------------------------------------------------- max rows and response size
@pytest.fixture(scope="module")
def limited_gateway(local_stack, stack):
    """A second gateway on the same database with a small max-rows and response-size cap."""
    procs = []

    def spawn(*args: str):
        proc, url = local_stack.spawn_gateway(*args, log_name=f"gateway-limited-{len(procs)}.log")
        procs.append(proc)
        return dataclasses.replace(stack, url=url)

    yield spawn
    for p in procs:
        p.terminate()
        p.wait(10)


@pytest_asyncio.fixture
async def items(service):
    db = service.schema("gwtest")
    await db.table("items").delete().gte("id", 900).execute()
    await (
        db.table("items")
        .insert(
            [
                {"id": 900 + i, "name": f"limit item {i}", "owner": str(uuid.uuid4())}
                for i in range(10)
            ]
        )
        .execute()
    )
    await (
        db.table("parts")
        .insert([{"id": 9000 + i, "item_id": 900, "label": f"p{i}"} for i in range(5)])
        .execute()
    )
    yield db
    await db.table("items").delete().gte("id", 900).execute()


async def test_max_rows_caps_the_top_level_and_every_embed(stack, limited_gateway, items):
    capped = limited_gateway("--max-rows", "3")
    svc = (await client_for(capped, capped.service_role_key, capped.service_role_key)).schema(
        "gwtest"
    )
    r = await svc.table("items").select("id,parts(id)").gte("id", 900).order("id").execute()
    assert [x["id"] for x in r.data] == [900, 901, 902]
    assert len(r.data[0]["parts"]) == 3  # item 900 has 5 parts
    r = (
        await svc.table("items")
        .select("id", count="exact")
        .gte("id", 900)
        .order("id")
        .range(0, 9)
        .execute()
    )
    assert len(r.data) == 3 and r.count == 10
    later = await svc.table("items").select("id").gte("id", 900).order("id").range(3, 5).execute()
    assert [x["id"] for x in later.data] == [903, 904, 905]


async def test_services_page_correctly_under_a_cap_smaller_than_their_page(
    stack, limited_gateway, tmp_path
):
    from pharmgpt.services.container import Services

    capped = limited_gateway("--max-rows", "3")
    svc = await Services.create(service_settings(capped, tmp_path, db_max_rows=3))
    try:
        user = await svc.users.create_user(f"pager-{uuid.uuid4().hex[:8]}", "correct horse battery")
        convs = [
            await svc.conversations.create_conversation(user.id, f"chat {i}") for i in range(7)
        ]
        listed = await svc.conversations.get_user_conversations(user.id, limit=30)
        assert sorted(c.id for c in listed) == sorted(c.id for c in convs)
        assert len({c.id for c in listed}) == 7
        second = await svc.conversations.get_user_conversations(user.id, limit=4, offset=4)
        assert [c.id for c in second] == [c.id for c in listed[4:]]
        for i in range(7):
            await svc.conversations.add_message(
                user.id, convs[0].id, {"role": "user", "content": f"m{i}"}
            )
        msgs = await svc.conversations.get_messages(user.id, convs[0].id, limit=50)
        assert [m.content for m in msgs] == [f"m{i}" for i in range(7)]
        exported = json.loads(
            await svc.conversations.export_conversation(user.id, convs[0].id, "json")
        )
        assert [m["content"] for m in exported["messages"]] == [f"m{i}" for i in range(7)]
        docs = [
            await svc.documents.register_upload(
                user.id, f"note{i}.txt", f"paging note {i}".encode()
            )
            for i in range(5)
        ]
        library = await svc.documents.get_library_documents(user.id)
        assert sorted(d.id for d in library) == sorted(d.id for d in docs)
        assert len(await svc.documents.get_upload_history(user.id)) == 5
        assert set(await svc.documents.job_progress(user.id, [d.id for d in docs])) == {
            d.id for d in docs
        }
    finally:
        await svc.close()


async def test_a_response_over_the_size_cap_is_refused_and_a_write_rolls_back(
    stack, limited_gateway, items
):
    capped = limited_gateway("--max-response-bytes", "400")
    svc = (await client_for(capped, capped.service_role_key, capped.service_role_key)).schema(
        "gwtest"
    )
    with pytest.raises(APIError) as e:
        await svc.table("items").select("*").gte("id", 900).execute()
    assert e.value.code == "LB507" and "limit" in e.value.message
    small = await svc.table("items").select("id").eq("id", 900).execute()
    assert small.data == [{"id": 900}]
    with pytest.raises(APIError) as e:
        await svc.table("items").insert({"id": 990, "name": "big", "note": "x" * 1000}).execute()
    assert e.value.code == "LB507"
    left = await items.table("items").select("id").eq("id", 990).execute()
    assert left.data == []  # the insert rolled back with the refused response


# ---------------------------------------------------------------------- filters and NUL bytes
async def test_deep_or_many_filters_and_long_queries_get_400s_not_500s(stack, service):
    db = service.schema("gwtest")
    deep = "or(" * 1000 + "id.eq.1" + ")" * 1000
    with pytest.raises(APIError) as e:
        await db.table("items").select("id").or_(deep).execute()
    assert e.value.code == "LB401" and "nested" in e.value.details
    many = ",".join(f"id.eq.{i}" for i in range(300))
    with pytest.raises(APIError) as e:
        await db.table("items").select("id").or_(many).execute()
    assert e.value.code == "LB401"
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        huge = "or(" * 15000 + "id.eq.1" + ")" * 15000  # the audit's 50 KB request
        r = await http.get(
            f"/rest/v1/items?select=id&or=({huge})",  # unencoded: under httpx's URL limit
            headers=headers(stack, stack.service_role_key, **{"Accept-Profile": "gwtest"}),
        )
        assert r.status_code == 400 and r.json()["code"] == "LB401"
        assert (await http.get("/health")).status_code == 200
    ok = await db.table("items").select("id").or_("id.eq.1,and(id.gt.1,id.lt.3)").execute()
    assert isinstance(ok.data, list)


async def test_a_query_string_over_the_limit_is_414(stack, limited_gateway):
    small = limited_gateway("--max-query-bytes", "2000")
    async with httpx.AsyncClient(base_url=small.url, timeout=10) as http:
        r = await http.get(
            "/rest/v1/items",
            params={"select": "id", "name": "in.(" + "x," * 1500 + "y)"},
            headers=headers(stack, stack.service_role_key, **{"Accept-Profile": "gwtest"}),
        )
    assert r.status_code == 414 and r.json()["code"] == "LB414"


async def test_nul_bytes_in_filters_and_bodies_are_400(service):
    db = service.schema("gwtest")
    with pytest.raises(APIError) as e:
        await db.table("items").select("id").eq("name", "a\x00b").execute()
    assert e.value.code == "LB400"
    with pytest.raises(APIError) as e:
        await db.table("items").insert({"id": 991, "name": "a\x00b"}).execute()
    assert e.value.code == "LB400"
    with pytest.raises(APIError) as e:
        await db.table("items").insert({"id": 991, "name": "ok", "data": {"k\x00": 1}}).execute()
    assert e.value.code == "LB400"


# ---------------------------------------------------------------------- JWT time claims
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_numeric_string_time_claim_is_401_every_time(stack, make_user, claim):
    user = await make_user("strclaim")
    token = user_token(
        stack, user.id, **{claim: str(int(time.time()) + (600 if claim == "exp" else -10))}
    )
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        for _ in range(2):  # the second use went through the token cache and gave 500
            r = await http.get(
                "/rest/v1/conversations", params={"select": "id"}, headers=headers(stack, token)
            )
            assert r.status_code == 401, r.text
            assert claim in r.json()["message"]


async def test_thirty_seconds_of_clock_skew_are_allowed(stack, make_user):
    user = await make_user("skew")
    now = int(time.time())
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:

        async def status(**claims) -> int:
            r = await http.get(
                "/rest/v1/conversations",
                params={"select": "id"},
                headers=headers(stack, user_token(stack, user.id, **claims)),
            )
            return r.status_code

        assert await status(exp=now - 20) == 200
        assert await status(nbf=now + 20) == 200
        assert await status(iat=now + 20) == 200
        assert await status(exp=now - 90) == 401
        assert await status(nbf=now + 90) == 401


# ---------------------------------------------------------------------- SQLSTATE statuses
@pytest.mark.parametrize(
    "state,status",
    [
        ("40001", 500),
        ("40P01", 500),
        ("57014", 500),
        ("57P01", 503),
        ("0A000", 400),
        ("28000", 403),
        ("28P01", 403),
        ("53300", 503),
        ("53400", 500),
        ("P0001", 400),
        ("42501", 403),
        ("23505", 409),
        ("PT418", 418),
    ],
)
async def test_sqlstates_get_postgrests_http_statuses(stack, functions, make_user, state, status):
    user = await make_user("state")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        r = await http.post(
            "/rest/v1/rpc/raise_state",
            json={"state": state},
            headers=headers(stack, user.token, **{"Content-Profile": "gwtest"}),
        )
    assert (r.status_code, r.json()["code"]) == (status, state)


# ---------------------------------------------------------------------- Prefer
async def test_unknown_prefer_values_are_ignored_unless_handling_is_strict(stack, items):
    h = headers(stack, stack.service_role_key, **{"Accept-Profile": "gwtest"})
    params = {"select": "id", "id": "gte.900"}
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        r = await http.get(
            "/rest/v1/items",
            params=params,
            headers={**h, "Prefer": "count=bogus, foo=bar, tx=rollback"},
        )
        assert r.status_code == 200 and len(r.json()) == 10
        assert "preference-applied" not in r.headers
        r = await http.get(
            "/rest/v1/items", params=params, headers={**h, "Prefer": "handling=strict, foo=bar"}
        )
        assert (
            r.status_code == 400
            and r.json()["code"] == "PGRST122"
            and "foo=bar" in r.json()["details"]
        )
        r = await http.get(
            "/rest/v1/items", params=params, headers={**h, "Prefer": "handling=strict, count=exact"}
        )
        assert r.status_code == 200 and r.headers["content-range"].endswith("/10")


# ---------------------------------------------------------------------- the API root
async def test_the_api_root_is_served_to_the_service_role_only(stack, make_user):
    user = await make_user("root")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as http:
        anon = await http.get("/rest/v1/", headers=headers(stack))
        authed = await http.get("/rest/v1/", headers=headers(stack, user.token))
        svc = await http.get("/rest/v1/", headers=headers(stack, stack.service_role_key))
    assert anon.status_code == 401 and authed.status_code == 403
    assert anon.json()["code"] == "42501"
    assert svc.status_code == 200 and "public.conversations" in svc.json()["tables"]
