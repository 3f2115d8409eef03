"""The gateway as an operator meets it: schema reload, the database going away,
standalone mode configured like PostgREST, headers-only inserts, own-row CRUD."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from pharmgpt.localbase.postgres import free_port
from pharmgpt.localbase.stack import LocalStack
from postgrest.exceptions import APIError

from tests.conftest import client_for, prove_upload

pytestmark = pytest.mark.integration


async def test_schema_cache_reloads_on_notify(stack, service):
    name = f"t_{uuid.uuid4().hex[:8]}"
    db = service.schema("gwtest")
    with pytest.raises(APIError) as e:
        await db.table(name).select("*").execute()
    assert e.value.code == "PGRST205"
    with psycopg.connect(stack.db_uri, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE gwtest.{name} (id int PRIMARY KEY, v text)")
        conn.execute(f"GRANT ALL ON gwtest.{name} TO service_role")
        conn.execute("NOTIFY pgrst, 'reload schema'")
    deadline = time.monotonic() + 10
    while True:
        try:
            await db.table(name).insert({"id": 1, "v": "x"}).execute()
            break
        except APIError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert (await db.table(name).select("v").execute()).data == [{"v": "x"}]


async def test_headers_only_insert_gives_location(stack):
    async with httpx.AsyncClient() as http:
        h = {
            "apikey": stack.service_role_key,
            "Content-Profile": "gwtest",
            "Prefer": "return=headers-only",
        }
        resp = await http.post(
            f"{stack.url}/rest/v1/items", json={"id": 900, "name": "located"}, headers=h
        )
        assert resp.status_code == 201 and resp.content == b""
        assert resp.headers["location"] == "/items?id=eq.900"
        resp = await http.delete(f"{stack.url}/rest/v1/items?id=eq.900", headers=h)
        assert resp.status_code == 204


async def test_owner_crud_on_user_tables(make_user, service):
    u = await make_user()
    await prove_upload(service, u.id, "d" * 64)
    c = u.client
    conv = (await c.table("conversations").insert({"title": "crud"}).execute()).data[0]
    r = (
        await c.table("conversations")
        .update({"title": "renamed", "is_pinned": True})
        .eq("id", conv["id"])
        .execute()
    )
    assert r.data[0]["title"] == "renamed" and r.data[0]["is_pinned"] is True
    with pytest.raises(APIError) as e:  # counters belong to triggers, not to clients
        await c.table("conversations").update({"message_count": 99}).eq("id", conv["id"]).execute()
    assert e.value.code == "42501"
    doc = (
        await c.table("documents")
        .insert({"sha256": "d" * 64, "filename": "a.pdf", "file_type": "pdf"})
        .execute()
    ).data[0]
    r = await c.table("documents").update({"filename": "b.pdf"}).eq("id", doc["id"]).execute()
    assert r.data[0]["filename"] == "b.pdf"
    with pytest.raises(APIError):  # processing status is the worker's (service role)
        await c.table("documents").update({"status": "ready"}).eq("id", doc["id"]).execute()
    await c.table("user_preferences").upsert({"key": "model", "value": {"name": "x"}}).execute()
    await c.table("user_preferences").upsert({"key": "model", "value": {"name": "y"}}).execute()
    r = await c.table("user_preferences").select("value").eq("key", "model").single().execute()
    assert r.data == {"value": {"name": "y"}}
    await c.table("user_preferences").delete().eq("key", "model").execute()
    assert (await c.table("user_preferences").select("*").execute()).data == []
    r = await c.table("documents").delete().eq("id", doc["id"]).execute()
    assert len(r.data) == 1
    r = await c.table("conversations").delete().eq("id", conv["id"]).execute()
    assert len(r.data) == 1


@pytest.mark.slow
async def test_database_going_away_gives_503_then_recovers():
    root = Path(tempfile.mkdtemp(prefix="pgd-", dir="/tmp"))
    st = LocalStack(root / "d", ephemeral=True, gateway_port=0)
    info = st.up()
    try:
        svc = await client_for(info, info.service_role_key, info.service_role_key)
        await svc.table("users").insert({"username": "before", "password_hash": "x" * 60}).execute()
        st.pg.stop()
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                f"{info.url}/rest/v1/users",
                json={"username": "during", "password_hash": "x" * 60},
                headers={"apikey": info.service_role_key},
            )
        assert resp.status_code == 503
        assert set(resp.json()) == {"code", "message", "details", "hint"}
        st.pg.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                r = await svc.table("users").select("username").order("username").execute()
                break
            except APIError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert [x["username"] for x in r.data] == ["before"]  # nothing half-written
    finally:
        st.down()
        st.pg.reset()


@pytest.mark.slow
def test_standalone_gateway_configured_like_postgrest(stack, tmp_path):
    port = free_port()
    dsn = stack.db_uri  # any database: here the session's, as its superuser
    if stack.legacy:
        keys = ["--jwt-secret", stack.jwt_secret]
    else:  # what it needs to verify: the public JWK and the API keys
        keys_file = tmp_path / "gateway-keys.json"
        keys_file.write_text(json.dumps(stack.gateway_keys()))
        assert '"d"' not in keys_file.read_text()
        keys = ["--keys-file", str(keys_file)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pharmgpt",
            "local",
            "gateway",
            "--db-uri",
            dsn,
            "--port",
            str(port),
            *keys,
            "--anon-role",
            "anon",
            "--schemas",
            "gwtest,public",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        resp = httpx.get(
            f"http://127.0.0.1:{port}/rest/v1/items?select=id&limit=1",
            headers={"apikey": stack.service_role_key},
        )  # first schema is the default
        assert resp.status_code == 200, resp.text
        resp = httpx.get(
            f"http://127.0.0.1:{port}/rest/v1/items", headers={"apikey": stack.anon_key}
        )
        assert resp.status_code == 401  # anon has no grant on gwtest.items
    finally:
        proc.terminate()
        proc.wait(10)


def test_local_keys_command_prints_working_keys(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pharmgpt",
            "local",
            "keys",
            "--data-dir",
            str(tmp_path / "k"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert set(lines) == {
        "SUPABASE_URL",
        "SUPABASE_PUBLISHABLE_KEY",
        "SUPABASE_SECRET_KEY",
        "SUPABASE_JWT_SIGNING_KEY",
    }
    assert lines["SUPABASE_PUBLISHABLE_KEY"].startswith("sb_publishable_")
    assert lines["SUPABASE_SECRET_KEY"].startswith("sb_secret_")
    from pharmgpt.localbase.keys import load_signing_key

    signer = load_signing_key(lines["SUPABASE_JWT_SIGNING_KEY"])
    assert signer.alg == "ES256" and signer.kid
    assert (tmp_path / "k" / "keys.json").stat().st_mode & 0o777 == 0o600
    out2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "pharmgpt",
            "local",
            "keys",
            "--data-dir",
            str(tmp_path / "k"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out2.stdout == out.stdout  # kept, not regenerated


async def test_unsupported_features_fail_loudly_and_change_nothing(stack, service):
    db = service.schema("gwtest")
    await db.table("items").upsert({"id": 950, "name": "keep"}).execute()
    async with httpx.AsyncClient() as http:
        h = {
            "apikey": stack.service_role_key,
            "Content-Profile": "gwtest",
            "Accept-Profile": "gwtest",
        }
        resp = await http.delete(f"{stack.url}/rest/v1/items?id=gte.950&limit=1", headers=h)
        assert resp.status_code == 400
        resp = await http.patch(
            f"{stack.url}/rest/v1/items?id=eq.950",
            headers={**h, "Prefer": "max-affected=1,handling=strict"},
            json={"name": "x"},
        )
        assert resp.status_code == 400
        resp = await http.get(f"{stack.url}/rest/v1/items?select=count()", headers=h)
        assert resp.status_code == 400
    assert (await db.table("items").select("name").eq("id", 950).execute()).data == [
        {"name": "keep"}
    ]


def test_doctor_reports_a_reachable_store_and_masks_secrets(stack, tmp_path):
    env = {
        **os.environ,
        **stack.as_env(),
        "PHARMGPT_DATA_DIR": str(tmp_path),
        "PHARMGPT_SECRETS_FILE": str(tmp_path / "none.toml"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "pharmgpt", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK   supabase" in out.stdout
    for secret in (stack.jwt_secret, stack.signing_key, stack.service_role_key):
        assert secret is None or secret not in out.stdout
    env["SUPABASE_URL"] = "http://127.0.0.1:9"
    out = subprocess.run(
        [sys.executable, "-m", "pharmgpt", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1 and "not reachable" in out.stdout
