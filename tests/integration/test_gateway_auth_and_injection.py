"""Tokens the gateway must refuse, and hostile input that must stay data."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import psycopg
import pytest
from postgrest.exceptions import APIError

from tests.conftest import client_for, user_token

pytestmark = pytest.mark.integration


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def forged_tokens(stack, user_id: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user_id, "role": "authenticated", "aud": "authenticated", "exp": now + 600}
    return {
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "wrong_secret": jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256"),
        "wrong_audience": user_token(stack, user_id, aud="somebody-else"),
        "expired": stack.signer.sign({**claims, "exp": now - 120}),
        "garbage": "not.a.jwt",
        "unknown_role": stack.signer.sign({**claims, "role": "postgres"}),
        "hs512": jwt.encode(claims, stack.jwt_secret or "s" * 64, algorithm="HS512"),
    }


@pytest.mark.parametrize(
    "kind",
    ["alg_none", "wrong_secret", "wrong_audience", "expired", "garbage", "unknown_role", "hs512"],
)
async def test_bad_tokens_get_401_with_postgrest_body(stack, make_user, kind):
    user = await make_user()
    await user.client.table("conversations").insert({"title": "mine"}).execute()
    token = forged_tokens(stack, user.id)[kind]
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{stack.url}/rest/v1/conversations",
            headers={"apikey": stack.anon_key, "Authorization": f"Bearer {token}"},
        )
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "details", "hint"} and body["code"].startswith("PGRST")
    client = await client_for(stack, token)
    with pytest.raises(APIError):
        await client.table("conversations").select("*").execute()


async def test_apikey_is_required_and_checked(stack):
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{stack.url}/rest/v1/conversations")
        assert resp.status_code == 401 and "API key" in resp.json()["message"]
        forged = jwt.encode({"role": "service_role"}, "wrong", algorithm="HS256")
        resp = await http.get(f"{stack.url}/rest/v1/conversations", headers={"apikey": forged})
        assert resp.status_code == 401


async def test_valid_user_token_works(stack, make_user):
    user = await make_user()
    r = await user.client.table("users").select("id").execute()
    assert r.data == [{"id": user.id}]


def snapshot(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public','gwtest')"
        ).fetchone()
        users = conn.execute(
            "SELECT count(*), md5(string_agg(id::text || username, ',' ORDER BY id)) "
            "FROM public.users"
        ).fetchone()
        items = conn.execute("SELECT count(*) FROM gwtest.items").fetchone()
    return tables, users, items


HOSTILE_PARAMS = [
    ("id", "eq.1;drop table users"),
    ("id", "eq.1); DROP TABLE public.users; --"),
    ("username", "eq.' OR '1'='1"),
    ("username", "like.*'; DELETE FROM users; --"),
    ("username", "in.(a,b);drop table users"),
    ("id;--", "eq.1"),
    ('username"; DROP TABLE users; --', "eq.x"),
    ("username->>x')); DROP TABLE users; --", "eq.1"),
    ("or", "(id.eq.1,username.eq.x);drop table users"),
    ("order", "id;drop table users"),
    ("order", "id.desc,(select 1)"),
    ("select", "id,(select password_hash from users)"),
    ("select", "id::text;drop table users"),
    ("select", "id,users!inner(*);drop"),
    ("limit", "1;drop table users"),
    ("username", "bogus.1"),
    ("username", "fts(english'),x).term"),
    ("nope", "eq.1"),
]


@pytest.mark.parametrize("key,value", HOSTILE_PARAMS)
async def test_injection_attempts_are_rejected_and_change_nothing(stack, key, value):
    before = snapshot(stack.db_uri)
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{stack.url}/rest/v1/users",
            params={key: value},
            headers={
                "apikey": stack.service_role_key,
                "Authorization": f"Bearer {stack.service_role_key}",
            },
        )
    assert resp.status_code in (200, 400, 404), resp.text
    if resp.status_code == 200:
        assert resp.json() == []  # treated as a value that matches nothing
    else:
        body = resp.json()
        assert set(body) == {"code", "message", "details", "hint"} and body["message"]
    assert snapshot(stack.db_uri) == before


async def test_hostile_values_through_the_client_are_plain_data(service, stack):
    before = snapshot(stack.db_uri)
    nasty = [
        "'; DROP TABLE users; --",
        'a"b\\c',
        "ünïcödé 💊",
        "%_*",
        "1 OR 1=1",
        "(a,b)",
        "{x}",
        "\x7f",
    ]
    for value in nasty:
        r = await service.table("users").select("id").eq("username", value).execute()
        assert r.data == []
        r = await service.table("users").select("id").in_("username", [value, "zz"]).execute()
        assert r.data == []
        r = (
            await service.table("users").select("id").or_(f'username.eq."{value}"').execute()
            if '"' not in value and "\\" not in value
            else r
        )
        assert r.data == []
    assert snapshot(stack.db_uri) == before


async def test_unknown_rpc_and_table_names(stack):
    async with httpx.AsyncClient() as http:
        h = {"apikey": stack.service_role_key}
        for path in [
            "/rest/v1/users;drop",
            "/rest/v1/rpc/pg_sleep",
            "/rest/v1/rpc/x%27%3Bdrop",
            "/rest/v1/pg_catalog.pg_authid",
        ]:
            resp = await http.get(f"{stack.url}{path}", headers=h)
            assert resp.status_code == 404, path
            assert resp.json()["code"] in ("PGRST205", "PGRST202")


async def test_schema_outside_the_exposed_list_is_refused(stack):
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{stack.url}/rest/v1/pg_authid",
            headers={"apikey": stack.service_role_key, "Accept-Profile": "pg_catalog"},
        )
    assert resp.status_code == 406 and resp.json()["code"] == "PGRST106"
