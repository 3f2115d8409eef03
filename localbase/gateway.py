"""A PostgREST-compatible ASGI gateway serving `/rest/v1`.

Per request: check the `apikey` (an opaque `sb_publishable_…`/`sb_secret_…`
key, or a legacy JWT key), verify the bearer JWT, open one transaction
on a pooled `authenticator` connection, switch to the claim's role with
`set_config('role', ..., true)`, apply that role's own settings (its
`statement_timeout`, as PostgREST does), expose the claims to `auth.uid()`,
run one generated statement, and answer in PostgREST's shapes and statuses.

Limits (see docs/security.md, "Gateway limits"): per-user concurrency, an
optional max-rows cap, a response-size cap, bounded filter parsing, NUL bytes
refused, and a query cancelled in Postgres when its client goes away.
`/health` has its own connection, so a flood of slow queries cannot fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import hmac
import io
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import orjson
import psycopg
from psycopg import AsyncRawCursor
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from . import schema_cache
from .auth import JwtConfig, verify
from .errors import ApiError, pgrst, status_for_sqlstate
from .fairness import UserSlots
from .grammar import Budget, parse_query
from .keys import KeySet, api_key_role, is_opaque_api_key
from .prefer import parse_prefer
from .sqlbuilder import MUTATION_TAIL, Builder, Statement

# a request waits this long for a pooled connection before the database is probed directly;
# an unreachable database is then reported at once, and for DB_DOWN_HOLD_S to the next requests
DB_PROBE_AFTER_S = 1.0
DB_PROBE_TIMEOUT_S = 1
DB_DOWN_HOLD_S = 2.0

log = logging.getLogger(__name__)

OBJECT_MEDIA = "application/vnd.pgrst.object+json"
_CONTEXT_SQL = (
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),"
    " set_config('request.method', $3, true), set_config('request.path', $4, true),"
    " set_config('transaction_read_only', $5, true)"
)
JSON_MEDIA = "application/json"
CSV_MEDIA = "text/csv"


@dataclass
class GatewayConfig:
    db_uri: str
    jwt_secret: str | None = None  # the legacy HS256 secret
    keys: KeySet | None = None  # signing keys by kid, the opaque API keys, whether legacy JWT apikeys work
    schemas: list[str] = field(default_factory=lambda: ["public"])
    anon_role: str = "anon"
    jwt_audience: str | None = "authenticated"
    pool_min: int = 2
    pool_max: int = 10
    max_body_bytes: int = 64 * 1024 * 1024
    require_apikey: bool = True
    # limits (docs/security.md "Gateway limits")
    max_rows: int | None = None  # like PostgREST's db-max-rows, top level and every embed
    max_response_bytes: int = 32 * 1024 * 1024
    max_query_bytes: int = 64 * 1024
    max_filters: int = 200
    max_filter_depth: int = 8
    per_user_connections: int = 4  # of pool_max, per JWT subject; service_role is not limited
    pool_wait_s: float = 10.0
    root_roles: tuple[str, ...] = ("service_role",)  # who may list the schema at /rest/v1/


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    client: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _range(headers: dict[str, str]) -> tuple[int | None, int | None]:
    """`Range: 0-9` as (offset, limit)."""
    raw = headers.get("range")
    if not raw:
        return None, None
    raw = raw.split("=", 1)[-1].strip()
    try:
        start_s, end_s = raw.split("-", 1)
        start = int(start_s)
        end = int(end_s) if end_s else None
    except ValueError:
        raise pgrst("PGRST103", "Requested range not satisfiable", f"bad Range header {raw!r}") from None
    if end is not None and end < start:
        raise pgrst("PGRST103", "Requested range not satisfiable", None)
    return start, (None if end is None else end - start + 1)


def _to_csv(body: str) -> bytes:
    rows = orjson.loads(body)
    out = io.StringIO()
    if rows:
        w = csv.writer(out, lineterminator="\n")
        keys = list(rows[0].keys())
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else (orjson.dumps(r[k]).decode()
                        if isinstance(r.get(k), (dict, list)) else r.get(k)) for k in keys])
    return out.getvalue().encode()


class Gateway:
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.jwt = JwtConfig(cfg.jwt_secret, cfg.jwt_audience, cfg.anon_role, keys=cfg.keys)
        self.keys: KeySet = self.jwt.keys  # type: ignore[assignment]  # set by JwtConfig
        self._jwks_body = orjson.dumps(self.keys.public_jwks())
        self.pool: AsyncConnectionPool | None = None
        self.health_pool: AsyncConnectionPool | None = None
        self.cache: schema_cache.SchemaCache | None = None
        self._listener: asyncio.Task | None = None
        self.slots = UserSlots(cfg.per_user_connections, cfg.pool_wait_s)
        self._db_down_until = 0.0  # monotonic time until which the database counts as unreachable

    # ------------------------------------------------------------------ reaching the database
    @contextlib.asynccontextmanager
    async def _connection(self):
        """A pooled connection. While the database cannot be reached at all, say so within about
        a second (503 PGRST001) instead of holding the request for the whole pool wait: a quick
        wait first, then a direct probe decides between "busy" (wait on) and "down"."""
        assert self.pool is not None
        if time.monotonic() < self._db_down_until:
            raise pgrst("PGRST001", "Database client error. Retrying the connection.",
                        "the database was unreachable a moment ago")
        quick = min(DB_PROBE_AFTER_S, self.cfg.pool_wait_s)
        async with contextlib.AsyncExitStack() as held:
            try:
                conn = await held.enter_async_context(self.pool.connection(timeout=quick))
            except PoolTimeout:
                if not await self._database_answers():
                    self._db_down_until = time.monotonic() + DB_DOWN_HOLD_S
                    raise pgrst("PGRST001", "Database client error. Retrying the connection.",
                                "the database cannot be reached") from None
                conn = await held.enter_async_context(
                    self.pool.connection(timeout=max(0.1, self.cfg.pool_wait_s - quick)))
            yield conn

    async def _database_answers(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(self.cfg.db_uri, connect_timeout=DB_PROBE_TIMEOUT_S,
                                                         autocommit=True)
        except psycopg.Error:
            return False
        await conn.close()
        return True

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.pool = AsyncConnectionPool(
            self.cfg.db_uri, min_size=self.cfg.pool_min, max_size=self.cfg.pool_max, open=False,
            kwargs={"autocommit": True, "cursor_factory": AsyncRawCursor, "prepare_threshold": 3},
        )
        await self.pool.open(wait=True, timeout=30)
        # readiness never queues behind user queries
        self.health_pool = AsyncConnectionPool(self.cfg.db_uri, min_size=1, max_size=1, open=False,
                                               kwargs={"autocommit": True})
        await self.health_pool.open(wait=True, timeout=30)
        await self.reload_schema()
        self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
        if self.pool:
            await self.pool.close()
        if self.health_pool:
            await self.health_pool.close()

    async def reload_schema(self) -> None:
        def _load():
            with psycopg.connect(self.cfg.db_uri) as conn:
                return schema_cache.load(conn, self.cfg.schemas)
        self.cache = await asyncio.to_thread(_load)
        log.info("schema cache loaded: %d tables, %d functions", len(self.cache.tables), len(self.cache.functions))

    async def _listen(self) -> None:
        """Reload the schema cache on `NOTIFY pgrst, 'reload schema'`, like PostgREST."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.cfg.db_uri, autocommit=True) as conn:
                    await conn.execute("LISTEN pgrst")
                    async for note in conn.notifies():
                        if note.payload in ("", "reload schema"):
                            await self.reload_schema()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away; try again shortly
                log.warning("schema listener: %s", e)
                await asyncio.sleep(2)

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            raw_query = scope.get("query_string", b"")
            if len(raw_query) > self.cfg.max_query_bytes:
                raise pgrst("LB414", "The query string is too long",
                            f"limit is {self.cfg.max_query_bytes} bytes", "Send fewer or shorter filters.")
            body = await self._read_body(receive, headers)
            req = Request(scope["method"], scope["path"],
                          parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True),
                          headers, body, (scope.get("client") or ("", 0))[0])
            resp = await self._until_disconnect(self.handle(req), receive)
            if resp is None:
                return  # the client went away; its query was cancelled
        except ApiError as e:
            resp = self._error(e)
        except Exception:
            log.exception("unhandled error")
            resp = self._error(pgrst("PGRSTX00", "Internal error in the gateway"))
        await self._send(send, resp, head=scope["method"] == "HEAD")

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _until_disconnect(work, receive) -> Response | None:
        """Run `work`, cancelling it if the client disconnects first.

        Cancelling the task makes psycopg send a cancel request for the running
        statement, so an abandoned query stops using its backend and connection.
        """
        task = asyncio.ensure_future(work)

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            log.info("client disconnected; request cancelled")
            return None
        return task.result()

    async def _read_body(self, receive, headers: dict[str, str]) -> bytes:
        if int(headers.get("content-length") or 0) > self.cfg.max_body_bytes:
            raise pgrst("LB413", "Request body too large", f"limit is {self.cfg.max_body_bytes} bytes")
        chunks, size = [], 0
        more = True
        while more:
            msg = await receive()
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.cfg.max_body_bytes:
                raise pgrst("LB413", "Request body too large",
                            f"limit is {self.cfg.max_body_bytes} bytes")
            chunks.append(chunk)
            more = msg.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _send(send, resp: Response, head: bool) -> None:
        hdrs = [(b"content-length", str(len(resp.body)).encode())]
        hdrs += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        await send({"type": "http.response.start", "status": resp.status, "headers": hdrs})
        await send({"type": "http.response.body", "body": b"" if head else resp.body})

    def _error(self, e: ApiError) -> Response:
        headers = {"content-type": "application/json; charset=utf-8", **e.headers}
        return Response(e.status, orjson.dumps(e.body()), headers)

    # ------------------------------------------------------------------ routing
    async def handle(self, req: Request) -> Response:
        if req.path in ("/health", "/ready"):
            return await self._health()
        if req.path == "/auth/v1/.well-known/jwks.json" and req.method in ("GET", "HEAD"):
            return Response(200, self._jwks_body, {"content-type": "application/json",
                                                   "cache-control": "public, max-age=600"})
        if not req.path.startswith("/rest/v1"):
            raise pgrst("PGRST125", f"Not found: {req.path}")
        claims, role = self._authenticate(req.headers)
        rest = req.path[len("/rest/v1"):].strip("/")
        if rest == "":
            return self._root(role)
        parts = [unquote(p) for p in rest.split("/")]
        if parts[0] == "rpc" and len(parts) == 2:
            return await self._rpc(req, parts[1], claims, role)
        if len(parts) != 1:
            raise pgrst("PGRST125", f"Not found: {req.path}")
        return await self._table(req, parts[0], claims, role)

    def _authenticate(self, headers: dict[str, str]) -> tuple[dict, str]:
        """The claims and role of a request, as Supabase's API gateway and PostgREST decide them.

        An opaque apikey stands for its role unless the Authorization header
        carries a user's JWT (supabase clients repeat the apikey there, which
        counts as no user token); a legacy JWT apikey works only where legacy
        keys are enabled.
        """
        apikey = headers.get("apikey")
        key_role = None
        if apikey:
            key_role = self._api_key(apikey)
        elif self.cfg.require_apikey:
            raise ApiError(401, "PGRST302", "No API key found in request",
                           None, "No `apikey` request header was found.")
        auth = headers.get("authorization", "")
        token = None
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(401, "PGRST301", "Authorization header must be 'Bearer <jwt>'")
            token = value.strip()
        if token is not None and is_opaque_api_key(token):
            if not (apikey and key_role and hmac.compare_digest(token.encode(), apikey.encode())):
                raise ApiError(401, "PGRST301", "Invalid API key in the Authorization header", None,
                               "Send a user's JWT, or the same API key as the apikey header.")
            token = None
        if token is None and key_role is not None:
            return {"role": key_role}, key_role
        if token is None and apikey:
            token = apikey  # a legacy JWT apikey and no user token: the key's own claims
        if token is None:
            return {"role": self.cfg.anon_role}, self.cfg.anon_role
        claims = verify(token, self.jwt)
        role = claims.get("role") or self.cfg.anon_role
        if self.cache is not None and role not in self.cache.roles:
            raise ApiError(401, "PGRST301", f'role "{role}" is not allowed', None, None)
        return claims, role

    def _api_key(self, apikey: str) -> str | None:
        """The role of an opaque key; None for a (verified) legacy JWT key; 401 for anything else."""
        if is_opaque_api_key(apikey):
            role = self.keys.role_for_api_key(apikey)
            if role is None:
                hint = ("Use the project's sb_publishable_… or sb_secret_… key."
                        if api_key_role(apikey) is None else "This key is not one of the project's keys.")
                raise ApiError(401, "PGRST301", "Invalid API key", None, hint)
            return role
        if not self.keys.legacy_api_keys:
            raise ApiError(401, "PGRST301", "Legacy API keys are disabled", None,
                           "Use the project's sb_publishable_… or sb_secret_… key.")
        verify(apikey, self.jwt)
        return None

    def _schema(self, req: Request) -> str:
        hdr = "accept-profile" if req.method in ("GET", "HEAD") else "content-profile"
        schema = req.headers.get(hdr) or self.cfg.schemas[0]
        if schema not in self.cfg.schemas:
            raise pgrst("PGRST106", "The schema must be one of the following: " + ", ".join(self.cfg.schemas),
                        None, None)
        return schema

    def _root(self, role: str) -> Response:
        """The schema listing; only for the service role, as Supabase now serves its OpenAPI root."""
        assert self.cache is not None
        if role not in self.cfg.root_roles:
            raise ApiError(401 if role == self.cfg.anon_role else 403, "42501",
                           "permission denied: the API root is only served to the service role", None,
                           "Use the service-role (secret) key to list the schema.")
        doc = {"tables": sorted(f"{s}.{t}" for s, t in self.cache.tables),
               "functions": sorted(f"{s}.{f}" for s, f in self.cache.functions)}
        return Response(200, orjson.dumps(doc), {"content-type": "application/json; charset=utf-8"})

    async def _health(self) -> Response:
        try:
            assert self.health_pool is not None
            async with self.health_pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        except Exception as e:
            return Response(503, orjson.dumps({"status": "unavailable", "error": str(e)}))
        return Response(200, b'{"status":"ok"}', {"content-type": "application/json"})

    def _accept(self, req: Request) -> str:
        accept = req.headers.get("accept", "") or JSON_MEDIA
        if OBJECT_MEDIA in accept:
            return OBJECT_MEDIA
        if CSV_MEDIA in accept:
            return CSV_MEDIA
        if "application/json" in accept or "*/*" in accept or "application/vnd.pgrst.array+json" in accept \
                or accept.strip() == "":
            return JSON_MEDIA
        raise pgrst("PGRST107", f"None of these media types are available: {accept}", None, None)

    def _json_body(self, req: Request):
        if not req.body:
            return {} if req.method == "PATCH" else None
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError as e:
            raise pgrst("PGRST102", "Empty or invalid json", str(e)) from None
        if b"\\u0000" in req.body:  # a raw NUL is not valid JSON; only the escape can carry one
            _refuse_nul(body)
        return body

    def _parse(self, req: Request, rpc_arg_names: set[str] | None = None):
        budget = Budget(self.cfg.max_filters, self.cfg.max_filter_depth)
        return parse_query(req.query, rpc_arg_names=rpc_arg_names, budget=budget)

    def _cap(self, limit: int | None) -> int | None:
        """The row limit after the max-rows cap (None: no limit)."""
        cap = self.cfg.max_rows
        if cap is None:
            return limit
        return cap if limit is None else min(limit, cap)

    # ------------------------------------------------------------------ tables
    async def _table(self, req: Request, name: str, claims: dict, role: str) -> Response:
        assert self.cache is not None
        schema = self._schema(req)
        prefer = parse_prefer(req.headers.get("prefer", ""))
        accept = self._accept(req)
        b = Builder(self.cache, schema, max_rows=self.cfg.max_rows)
        q = self._parse(req)
        count = prefer.count
        representation = prefer.ret == "representation"
        if req.method in ("GET", "HEAD"):
            r_off, r_lim = _range(req.headers)
            node = q.node(())
            offset = node.offset if node.offset is not None else r_off
            limit = node.limit
            if r_lim is not None:
                limit = r_lim if limit is None else min(limit, r_lim)
            st = b.read(name, q, count=count, limit=self._cap(limit), offset=offset)
            return await self._run(req, st, claims, role, accept, count=count, offset=offset or 0,
                                   read_only=True)
        if req.method == "POST":
            body = self._json_body(req)
            if body is None:
                raise pgrst("PGRST102", "Empty or invalid json")
            want_rows = representation or prefer.ret == "headers-only"
            st = b.insert(name, q, body, representation=want_rows, resolution=prefer.resolution,
                          missing_default=prefer.missing == "default")
            return await self._run(req, st, claims, role, accept, count=count, status=201,
                                   representation=representation,
                                   location=(name, schema) if prefer.ret == "headers-only" else None)
        if req.method == "PATCH":
            st = b.update(name, q, self._json_body(req), representation=representation)
            return await self._run(req, st, claims, role, accept, count=count,
                                   status=200 if representation else 204, representation=representation)
        if req.method == "DELETE":
            st = b.delete(name, q, representation=representation)
            return await self._run(req, st, claims, role, accept, count=count,
                                   status=200 if representation else 204, representation=representation)
        raise pgrst("PGRST117", f"Unsupported HTTP method: {req.method}")

    # ------------------------------------------------------------------ rpc
    async def _rpc(self, req: Request, name: str, claims: dict, role: str) -> Response:
        assert self.cache is not None
        schema = self._schema(req)
        accept = self._accept(req)
        prefer = parse_prefer(req.headers.get("prefer", ""))
        b = Builder(self.cache, schema, max_rows=self.cfg.max_rows)
        candidates = self.cache.functions.get((schema, name), [])
        arg_names = {a.name for fn in candidates for a in fn.args}
        if req.method in ("GET", "HEAD"):
            q = self._parse(req, arg_names)
            args: dict = dict(q.rpc_args)
        elif req.method == "POST":
            q = self._parse(req)
            body = self._json_body(req)
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise pgrst("PGRST102", "RPC arguments must be a JSON object")
            args = body
        else:
            raise pgrst("PGRST117", f"Unsupported HTTP method: {req.method}")
        fn = b.resolve_function(name, set(args))
        if req.method in ("GET", "HEAD"):
            for a in fn.args:  # query-string JSON arguments arrive as text
                if a.name in args and a.type in ("json", "jsonb"):
                    try:
                        args[a.name] = orjson.loads(args[a.name])
                    except orjson.JSONDecodeError:
                        pass
        count = prefer.count
        r_off, r_lim = _range(req.headers)
        node = q.node(())
        offset = node.offset if node.offset is not None else r_off
        limit = node.limit if r_lim is None else (r_lim if node.limit is None else min(node.limit, r_lim))
        st = b.rpc(fn, args, q, count=count, limit=self._cap(limit), offset=offset)
        read_only = req.method in ("GET", "HEAD") or fn.volatility in ("s", "i")
        return await self._run(req, st, claims, role, accept, count=count, offset=offset or 0,
                               read_only=read_only, rpc=True)

    # ------------------------------------------------------------------ execution
    async def _run(self, req: Request, st: Statement, claims: dict, role: str, accept: str, *,
                   count: str | None, status: int = 200, offset: int = 0, read_only: bool = False,
                   representation: bool = True, location: tuple[str, str] | None = None,
                   rpc: bool = False) -> Response:
        assert self.pool is not None
        claims_json = orjson.dumps(claims).decode()
        context = [role, claims_json, req.method, req.path, "on" if read_only else "off"]
        settings = self.cache.role_settings.get(role, []) if self.cache is not None else []
        for name, value in settings:
            context += [name, value]
        context_sql = _context_sql(len(settings))
        sql = _size_capped(st.sql, self.cfg.max_response_bytes, abort=not read_only)
        # a single-object mutation must roll back unless it touched exactly one row,
        # so it checks the count before COMMIT; everything else goes in one round trip
        must_check = accept == OBJECT_MEDIA and not read_only and not st.returns_scalar
        try:
            async with self.slots.hold(self._caller(req, claims, role)), self._connection() as conn:
                try:
                    if must_check:
                        async with conn.transaction():
                            await conn.execute(context_sql, context)
                            body, nrows, total, size = await (await conn.execute(sql, st.params)).fetchone()
                            self._check_size(body, size)
                            if nrows != 1:
                                raise pgrst("PGRST116", "Cannot coerce the result to a single JSON object",
                                            f"The result contains {nrows} rows", None)
                    else:
                        async with conn.pipeline():
                            async with conn.transaction():
                                await conn.execute(context_sql, context)
                                cur = await conn.execute(sql, st.params)
                                count_cur = (await conn.execute(st.count_sql, st.params)
                                             if st.count_sql else None)
                        body, nrows, total, size = await cur.fetchone()
                        self._check_size(body, size)
                        if count_cur is not None:
                            plan = await count_cur.fetchone()
                            total = int(plan[0][0]["Plan"]["Plan Rows"])
                        if accept == OBJECT_MEDIA and not st.returns_scalar and nrows != 1:
                            raise pgrst("PGRST116", "Cannot coerce the result to a single JSON object",
                                        f"The result contains {nrows} rows", None)
                except psycopg.errors.Error as e:
                    if isinstance(e, psycopg.OperationalError) and conn.closed:
                        raise
                    raise self._pg_error(e, role) from None
        except PoolTimeout as e:
            raise pgrst("PGRST003", "Timed out acquiring connection from connection pool.", str(e)) from None
        except psycopg.OperationalError as e:
            raise pgrst("PGRST001", "Database client error. Retrying the connection.", str(e)) from None
        headers: dict[str, str] = {}
        if count:
            headers["preference-applied"] = f"count={count}"
        if st.returns_void:
            return Response(204, b"", headers)
        if rpc and (st.returns_scalar or st.returns_object):
            if st.returns_object:
                body = body[1:-1] if nrows == 1 else "null"
            headers["content-type"] = "application/json; charset=utf-8"
            return Response(200, body.encode(), headers)
        total_s = "*" if total is None else str(total)
        if req.method in ("GET", "HEAD") or rpc:
            headers["content-range"] = (f"{offset}-{offset + nrows - 1}/{total_s}" if nrows
                                        else f"*/{total_s}")
            if total is not None and nrows and nrows < total:
                status = 206
            if total is not None and nrows == 0 and offset > 0 and offset >= total:
                raise pgrst("PGRST103", "Requested range not satisfiable",
                            f"An offset of {offset} was requested, but there are only {total} rows.",
                            headers={"content-range": f"*/{total}"})
        else:
            headers["content-range"] = f"*/{nrows if count else '*'}"
        if location is not None:
            headers["location"] = self._location(location, body)
        if not representation and req.method != "GET" and not rpc:
            return Response(status if req.method != "POST" else 201, b"", headers)
        if accept == CSV_MEDIA:
            headers["content-type"] = "text/csv; charset=utf-8"
            return Response(status, _to_csv(body), headers)
        if accept == OBJECT_MEDIA:
            headers["content-type"] = OBJECT_MEDIA + "; charset=utf-8"
            return Response(status, body[1:-1].encode(), headers)
        headers["content-type"] = "application/json; charset=utf-8"
        return Response(status, body.encode(), headers)

    def _caller(self, req: Request, claims: dict, role: str) -> str | None:
        """Whose share of the pool this request uses (None: not limited)."""
        if role in self.cfg.root_roles:
            return None
        sub = claims.get("sub")
        return f"sub:{sub}" if isinstance(sub, str) and sub else f"{role}@{req.client}"

    def _check_size(self, body: str | None, size: int | None) -> None:
        if body is None and size is not None:
            raise self._too_large(size)

    def _too_large(self, size: int | str) -> ApiError:
        return pgrst("LB507", "The response is larger than the gateway's limit",
                     f"{size} bytes; the limit is {self.cfg.max_response_bytes} bytes",
                     "Select fewer rows or columns (limit, Range, select) or page through the result.")

    def _location(self, target: tuple[str, str], body: str) -> str:
        name, schema = target
        rows = orjson.loads(body)
        t = self.cache.table(schema, name) if self.cache else None
        if not rows or t is None or not t.pk:
            return f"/{name}"
        from urllib.parse import quote
        return f"/{name}?" + "&".join(f"{k}=eq.{quote(str(rows[0].get(k)))}" for k in t.pk)

    def _pg_error(self, e: psycopg.errors.Error, role: str) -> ApiError:
        diag = e.diag
        sqlstate = e.sqlstate
        msg = diag.message_primary or ""
        if sqlstate == "22P02" and f'"{_OVERSIZE_TAG}' in msg:
            return self._too_large(msg.rsplit(_OVERSIZE_TAG, 1)[1].rstrip('"'))
        return ApiError(
            status_for_sqlstate(sqlstate, role, self.cfg.anon_role, diag.message_primary or ""),
            sqlstate or "PGRST000",
            diag.message_primary or str(e),
            diag.message_detail,
            diag.message_hint,
        )


_OVERSIZE_TAG = "LB507:"


@functools.cache
def _context_sql(n_settings: int) -> str:
    """The request-context statement, with `n_settings` role settings applied SET LOCAL."""
    extra = "".join(f", set_config(${6 + 2 * i}, ${7 + 2 * i}, true)" for i in range(n_settings))
    return _CONTEXT_SQL + extra


def _size_capped(sql: str, cap: int, abort: bool) -> str:
    """The statement with its JSON body withheld (NULL) past `cap` bytes, and the size beside it,
    so an oversized result is refused without crossing the wire.

    With `abort` (a write) an oversized result is an error inside the transaction instead, so
    the write rolls back rather than committing behind an error response: the cast of
    `LB507:<size>` to integer fails, and `_pg_error` turns that failure into LB507.
    """
    cap = int(cap)
    fallback = f"('{_OVERSIZE_TAG}' || octet_length(_s.b))::int::text" if abort else "NULL"
    capped = (f"SELECT CASE WHEN octet_length(_s.b) <= {cap} THEN _s.b ELSE {fallback} END, _s.n, _s.t, "
              "octet_length(_s.b)")
    if sql.endswith(MUTATION_TAIL):  # a data-modifying WITH stays at the top level
        return sql[: -len(MUTATION_TAIL)] + f" {capped} FROM _q _s"
    return f"{capped} FROM ({sql}) _s(b, n, t)"


def _refuse_nul(value) -> None:
    """400 for a NUL anywhere in a JSON body: Postgres text cannot hold it (iterative walk)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                raise pgrst("LB400", "The body contains a NUL character", None,
                            "Remove the \\u0000 character; Postgres text cannot hold it.")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def create_app(cfg: GatewayConfig) -> Gateway:
    return Gateway(cfg)
