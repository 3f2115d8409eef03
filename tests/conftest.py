"""Shared fixtures: one real local stack per test session (embedded Postgres + gateway + sql/).

Tests reach it only through the real `supabase` async client (and psycopg as
the superuser where a test must look underneath, e.g. to prove nothing changed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from pharmgpt.localbase.auth import mint
from pharmgpt.localbase.stack import LocalStack, StackInfo
from supabase import AsyncClient, AsyncClientOptions, acreate_client

TEST_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS gwtest;
GRANT USAGE ON SCHEMA gwtest TO anon, authenticated, service_role;
CREATE TABLE IF NOT EXISTS gwtest.items (
  id       integer PRIMARY KEY,
  owner    uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001',
  name     text NOT NULL,
  qty      integer,
  price    numeric(10,2),
  tags     text[] NOT NULL DEFAULT '{}',
  span     int4range,
  data     jsonb NOT NULL DEFAULT '{}',
  doc      tsvector GENERATED ALWAYS AS (to_tsvector('english', name)) STORED,
  flag     boolean,
  note     text,
  UNIQUE (name, owner)
);
CREATE TABLE IF NOT EXISTS gwtest.parts (
  id      integer PRIMARY KEY,
  item_id integer NOT NULL REFERENCES gwtest.items (id) ON DELETE CASCADE,
  label   text NOT NULL,
  weight  integer
);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gwtest TO authenticated, service_role;
CREATE OR REPLACE FUNCTION gwtest.add(a integer, b integer DEFAULT 1) RETURNS integer
  LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE OR REPLACE FUNCTION gwtest.items_over(min_qty integer) RETURNS SETOF gwtest.items
  LANGUAGE sql STABLE AS 'SELECT * FROM gwtest.items WHERE qty > min_qty';
CREATE OR REPLACE FUNCTION gwtest.echo_json(payload jsonb) RETURNS jsonb
  LANGUAGE sql IMMUTABLE AS 'SELECT payload';
CREATE OR REPLACE FUNCTION gwtest.touch_nothing() RETURNS void
  LANGUAGE sql VOLATILE AS 'SELECT NULL';
CREATE OR REPLACE FUNCTION gwtest.fail(msg text) RETURNS integer
  LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '%', msg; END $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA gwtest TO authenticated, service_role;
NOTIFY pgrst, 'reload schema';
"""


def pytest_configure(config):
    """One pytest temp root per checkout when tests run as root. Every pytest session resets the
    shared /tmp/pytest-of-root to 0700, which locks the embedded Postgres's service user out of
    the stacks of another session running at the same time (another checkout's suite)."""
    if os.geteuid() == 0 and "PYTEST_DEBUG_TEMPROOT" not in os.environ:
        digest = hashlib.sha1(str(config.rootpath).encode()).hexdigest()[:8]
        root = Path(tempfile.gettempdir()) / f"pharmgpt-tests-{digest}"
        root.mkdir(mode=0o711, exist_ok=True)
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(root)


def legacy_keys() -> bool:
    """PHARMGPT_TEST_KEYS=legacy: the stack is a legacy project (HS256 secret, JWT API keys);
    default: a new one (ES256 signing key with kid, sb_publishable_/sb_secret_ keys)."""
    mode = os.environ.get("PHARMGPT_TEST_KEYS", "").strip().lower()
    if mode not in ("", "es256", "legacy"):
        raise pytest.UsageError(f"PHARMGPT_TEST_KEYS must be es256 or legacy, not {mode!r}")
    return mode == "legacy"


@pytest.fixture(scope="session")
def local_stack() -> LocalStack:
    """The session's localbase stack object (for tests that start a second gateway on it)."""
    # short path: Postgres unix-socket paths are length-limited
    root = Path(tempfile.mkdtemp(prefix="pgt-", dir="/tmp"))
    st = LocalStack(
        root / "data",
        ephemeral=True,
        gateway_port=0,
        schemas=("public", "gwtest"),
        legacy_keys=legacy_keys(),
    )
    try:
        st.prepare_database()
        with psycopg.connect(st.pg.dsn(), autocommit=True) as conn:
            conn.execute(TEST_SCHEMA_SQL)
        st.up()
        yield st
    finally:
        st.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def supabase_shape():
    """A database bootstrapped like a Supabase project, sql/ applied by its non-superuser
    `postgres` (tests/fixtures/supabase_shape.py), behind the same gateway as `authenticator`."""
    from tests.fixtures.supabase_shape import SupabaseShapedStack

    root = Path(tempfile.mkdtemp(prefix="pgs-", dir="/tmp"))
    st = SupabaseShapedStack(root / "data", ephemeral=True, gateway_port=0)
    try:
        st.up()
        yield st
    finally:
        st.down()
        shutil.rmtree(root, ignore_errors=True)


STACKS = ("localbase", "supabase_shape")


@pytest.fixture(scope="session")
def stack(request) -> StackInfo:
    """The stack a test runs on: localbase, or each of those a module names with
    `pytest.mark.stacks(...)` (see pytest_generate_tests)."""
    kind = getattr(request, "param", "localbase")
    if kind == "supabase_shape":
        return request.getfixturevalue("supabase_shape").info
    return request.getfixturevalue("localbase_stack")


@pytest.fixture(scope="session")
def localbase_stack(local_stack: LocalStack) -> StackInfo:
    assert local_stack.info is not None
    return local_stack.info


def pytest_generate_tests(metafunc):
    """`pytestmark = pytest.mark.stacks("localbase", "supabase_shape")` runs a module's
    tests once per stack, the same tests, no copies."""
    marker = metafunc.definition.get_closest_marker("stacks")
    if marker is None or "stack" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(STACKS)
    if unknown:
        raise pytest.UsageError(f"unknown stack(s) {sorted(unknown)}; known: {STACKS}")
    metafunc.parametrize("stack", marker.args, indirect=True, scope="session")


@pytest.fixture(scope="session")
def chroma_server():
    """A real Chroma server from the chromadb wheel on 127.0.0.1 (what CHROMA_HOST points at in a
    larger install), over a throwaway directory; stopped after the session."""
    from pharmgpt.localbase.chroma import ChromaServer

    root = Path(tempfile.mkdtemp(prefix="pgt-chroma-", dir="/tmp"))
    server = ChromaServer(root / "chroma", log_path=root / "chroma.log").start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def worker_env(stack: StackInfo, data_dir: Path, chroma=None, **settings) -> dict[str, str]:
    """The environment of a `pharmgpt worker` process on the test stack (and a Chroma server)."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("GROQ_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST", "CHROMA_PORT")
    }
    env.update(stack.as_env())
    env.update(
        {
            "PHARMGPT_DATA_DIR": str(data_dir),
            "PHARMGPT_SECRETS_FILE": str(data_dir / "no-secrets.toml"),
            "PHARMGPT_RETRY_MAX_WAIT_S": "0.5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if chroma is not None:
        env.update(chroma.env())
    env.update({f"PHARMGPT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="session")
def superuser_dsn(stack: StackInfo) -> str:
    return stack.db_uri


def user_token(stack: StackInfo, user_id: str, **overrides) -> str:
    claims = {"sub": user_id, "aud": "authenticated", **overrides}
    lifetime = claims.pop("lifetime_s", 600)
    return mint(stack.signer, claims.pop("role", "authenticated"), lifetime_s=lifetime, **claims)


async def client_for(
    stack: StackInfo, bearer: str | None = None, apikey: str | None = None
) -> AsyncClient:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    opts = AsyncClientOptions(headers=headers)
    return await acreate_client(stack.url, apikey or stack.anon_key, opts)


@pytest_asyncio.fixture
async def service(stack: StackInfo) -> AsyncClient:
    return await client_for(stack, stack.service_role_key, stack.service_role_key)


@pytest_asyncio.fixture
async def anon(stack: StackInfo) -> AsyncClient:
    return await client_for(stack)


class TestUser:
    def __init__(self, id: str, username: str, client: AsyncClient, token: str):
        self.id, self.username, self.client, self.token = id, username, client, token


@pytest_asyncio.fixture
async def make_user(stack: StackInfo, service: AsyncClient):
    """Create fresh users (through the service role) with their own JWT clients."""

    async def _make(prefix: str = "u") -> TestUser:
        uid = str(uuid.uuid4())
        name = f"{prefix}-{uid[:8]}"
        await (
            service.table("users")
            .insert({"id": uid, "username": name, "password_hash": "$2b$12$" + "x" * 53})
            .execute()
        )
        token = user_token(stack, uid)
        return TestUser(uid, name, await client_for(stack, token), token)

    return _make


async def prove_upload(service: AsyncClient, user_id: str, sha256: str, size: int = 10) -> str:
    """The server's record that `user_id` stored bytes with this hash (what an upload writes
    before a document may name them); returns the proof id for register_document."""
    r = (
        await service.table("upload_proofs")
        .upsert(
            {"user_id": user_id, "sha256": sha256, "file_size": size}, on_conflict="user_id,sha256"
        )
        .execute()
    )
    return r.data[0]["id"]


def service_settings(stack: StackInfo, data_dir: Path, **overrides):
    from pharmgpt.services.config import Settings

    return Settings(
        **stack.settings_overrides(),
        data_dir=data_dir,
        bcrypt_rounds=4,
        retry_max_wait_s=0.5,
        **overrides,
    )


async def chroma_server_services(stack: StackInfo, chroma_server, data_dir: Path):
    """Services (and so the RAG system built on them) with CHROMA_HOST set to the server: the
    modules that run a suite again against a real Chroma server use this as their `services`."""
    from pharmgpt.services.container import Services

    svc = await Services.create(
        service_settings(
            stack, data_dir, chroma_host=chroma_server.host, chroma_port=chroma_server.port
        )
    )
    assert svc.settings.chroma_host == "127.0.0.1"
    return svc


@pytest_asyncio.fixture(scope="session")
async def services(stack: StackInfo, tmp_path_factory):
    """The real services, wired as the app wires them, over the session's stack."""
    from pharmgpt.services.container import Services

    svc = await Services.create(service_settings(stack, tmp_path_factory.mktemp("svc")))
    yield svc
    await svc.close()


@pytest_asyncio.fixture
async def account(services):
    """A fresh signed-up user (through UserService); returns (user, password)."""

    async def _make(prefix: str = "user", password: str = "correct horse battery"):
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        user = await services.users.create_user(name, password)
        return user, password

    return _make
