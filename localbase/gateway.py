"""A PostgREST-compatible ASGI gateway serving `/rest/v1`: the HTTP layer.

Per request: check the `apikey` (an opaque `sb_publishable_…`/`sb_secret_…`
key, or a legacy JWT key), verify the bearer JWT, route and parse the request,
build one statement, have `database.Database` run it as the caller (one
transaction in the claim's role, with that role's settings and the claims
exposed to `auth.uid()`), and answer in PostgREST's shapes and statuses.
This module never holds a database connection.

Limits (see docs/security.md, "Gateway limits"): per-user concurrency, an
optional max-rows cap, a response-size cap, bounded filter parsing, NUL bytes
refused, and a query cancelled in Postgres when its client goes away.
`/health` has its own connection, so a flood of slow queries cannot fail it.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import orjson

from .auth import JwtConfig, verify
from .database import Caller, Database, DatabaseConfig, Execution
from .errors import ApiError, pgrst
from .grammar import Budget, parse_query
from .keys import KeySet, api_key_role, is_opaque_api_key
from .prefer import parse_prefer
from .schema_cache import SchemaCache
from .sqlbuilder import Builder, Statement

log = logging.getLogger(__name__)

OBJECT_MEDIA = "application/vnd.pgrst.object+json"
JSON_MEDIA = "application/json"
CSV_MEDIA = "text/csv"


@dataclass
class GatewayConfig:
    db_uri: str
    jwt_secret: str | None = None  # the legacy HS256 secret
    keys: KeySet | None = (
        None  # signing keys by kid, the opaque API keys, whether legacy JWT apikeys work
    )
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
        raise pgrst(
            "PGRST103", "Requested range not satisfiable", f"bad Range header {raw!r}"
        ) from None
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
            w.writerow(
                [
                    ""
                    if r.get(k) is None
                    else (
                        orjson.dumps(r[k]).decode()
                        if isinstance(r.get(k), (dict, list))
                        else r.get(k)
                    )
                    for k in keys
                ]
            )
    return out.getvalue().encode()


class Gateway:
    def __init__(self, cfg: GatewayConfig):
        self.cfg = cfg
        self.jwt = JwtConfig(cfg.jwt_secret, cfg.jwt_audience, cfg.anon_role, keys=cfg.keys)
        self.keys: KeySet = self.jwt.keys  # type: ignore[assignment]  # set by JwtConfig
        self._jwks_body = orjson.dumps(self.keys.public_jwks())
        self.db = Database(
            DatabaseConfig(
                cfg.db_uri,
                schemas=cfg.schemas,
                anon_role=cfg.anon_role,
                pool_min=cfg.pool_min,
                pool_max=cfg.pool_max,
                per_user_connections=cfg.per_user_connections,
                pool_wait_s=cfg.pool_wait_s,
                max_response_bytes=cfg.max_response_bytes,
            )
        )

    @property
    def cache(self) -> SchemaCache | None:
        """The schema cache the statements are built from (the database keeps it current)."""
        return self.db.cache

    async def start(self) -> None:
        await self.db.start()

    async def stop(self) -> None:
        await self.db.stop()

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
                raise pgrst(
                    "LB414",
                    "The query string is too long",
                    f"limit is {self.cfg.max_query_bytes} bytes",
                    "Send fewer or shorter filters.",
                )
            body = await self._read_body(receive, headers)
            req = Request(
                scope["method"],
                scope["path"],
                parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True),
                headers,
                body,
                (scope.get("client") or ("", 0))[0],
            )
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
            raise pgrst(
                "LB413", "Request body too large", f"limit is {self.cfg.max_body_bytes} bytes"
            )
        chunks, size = [], 0
        more = True
        while more:
            msg = await receive()
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.cfg.max_body_bytes:
                raise pgrst(
                    "LB413", "Request body too large", f"limit is {self.cfg.max_body_bytes} bytes"
                )
            chunks.append(chunk)
            more = msg.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _send(send, resp: Response, head: bool) -> None:
        hdrs = [(b"content-length", str(len(resp.body)).encode())]
        hdrs += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()
        ]
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
            return Response(
                200,
                self._jwks_body,
                {"content-type": "application/json", "cache-control": "public, max-age=600"},
            )
        if not req.path.startswith("/rest/v1"):
            raise pgrst("PGRST125", f"Not found: {req.path}")
        claims, role = self._authenticate(req.headers)
        rest = req.path[len("/rest/v1") :].strip("/")
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
            raise pgrst(
                "PGRST302",
                "No API key found in request",
                None,
                "No `apikey` request header was found.",
            )
        auth = headers.get("authorization", "")
        token = None
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise pgrst("PGRST301", "Authorization header must be 'Bearer <jwt>'")
            token = value.strip()
        if token is not None and is_opaque_api_key(token):
            if not (apikey and key_role and hmac.compare_digest(token.encode(), apikey.encode())):
                raise pgrst(
                    "PGRST301",
                    "Invalid API key in the Authorization header",
                    None,
                    "Send a user's JWT, or the same API key as the apikey header.",
                )
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
            raise pgrst("PGRST301", f'role "{role}" is not allowed', None, None)
        return claims, role

    def _api_key(self, apikey: str) -> str | None:
        """An opaque key's role; None for a (verified) legacy JWT key; 401 for anything else."""
        if is_opaque_api_key(apikey):
            role = self.keys.role_for_api_key(apikey)
            if role is None:
                hint = (
                    "Use the project's sb_publishable_… or sb_secret_… key."
                    if api_key_role(apikey) is None
                    else "This key is not one of the project's keys."
                )
                raise pgrst("PGRST301", "Invalid API key", None, hint)
            return role
        if not self.keys.legacy_api_keys:
            raise pgrst(
                "PGRST301",
                "Legacy API keys are disabled",
                None,
                "Use the project's sb_publishable_… or sb_secret_… key.",
            )
        verify(apikey, self.jwt)
        return None

    def _schema(self, req: Request) -> str:
        hdr = "accept-profile" if req.method in ("GET", "HEAD") else "content-profile"
        schema = req.headers.get(hdr) or self.cfg.schemas[0]
        if schema not in self.cfg.schemas:
            raise pgrst(
                "PGRST106",
                "The schema must be one of the following: " + ", ".join(self.cfg.schemas),
                None,
                None,
            )
        return schema

    def _root(self, role: str) -> Response:
        """The schema listing: service role only, as Supabase now serves its OpenAPI root."""
        assert self.cache is not None
        if role not in self.cfg.root_roles:
            raise ApiError(
                401 if role == self.cfg.anon_role else 403,
                "42501",
                "permission denied: the API root is only served to the service role",
                None,
                "Use the service-role (secret) key to list the schema.",
            )
        doc = {
            "tables": sorted(f"{s}.{t}" for s, t in self.cache.tables),
            "functions": sorted(f"{s}.{f}" for s, f in self.cache.functions),
        }
        return Response(200, orjson.dumps(doc), {"content-type": "application/json; charset=utf-8"})

    async def _health(self) -> Response:
        error = await self.db.health_error()
        if error is not None:
            return Response(503, orjson.dumps({"status": "unavailable", "error": error}))
        return Response(200, b'{"status":"ok"}', {"content-type": "application/json"})

    def _accept(self, req: Request) -> str:
        accept = req.headers.get("accept", "") or JSON_MEDIA
        if OBJECT_MEDIA in accept:
            return OBJECT_MEDIA
        if CSV_MEDIA in accept:
            return CSV_MEDIA
        if (
            "application/json" in accept
            or "*/*" in accept
            or "application/vnd.pgrst.array+json" in accept
            or accept.strip() == ""
        ):
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
            return await self._run(
                req, st, claims, role, accept, count=count, offset=offset or 0, read_only=True
            )
        if req.method == "POST":
            body = self._json_body(req)
            if body is None:
                raise pgrst("PGRST102", "Empty or invalid json")
            want_rows = representation or prefer.ret == "headers-only"
            st = b.insert(
                name,
                q,
                body,
                representation=want_rows,
                resolution=prefer.resolution,
                missing_default=prefer.missing == "default",
            )
            return await self._run(
                req,
                st,
                claims,
                role,
                accept,
                count=count,
                status=201,
                representation=representation,
                location=(name, schema) if prefer.ret == "headers-only" else None,
            )
        if req.method in ("PATCH", "DELETE"):
            st = (
                b.update(name, q, self._json_body(req), representation=representation)
                if req.method == "PATCH"
                else b.delete(name, q, representation=representation)
            )
            return await self._run(
                req,
                st,
                claims,
                role,
                accept,
                count=count,
                status=200 if representation else 204,
                representation=representation,
            )
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
        limit = (
            node.limit
            if r_lim is None
            else (r_lim if node.limit is None else min(node.limit, r_lim))
        )
        st = b.rpc(fn, args, q, count=count, limit=self._cap(limit), offset=offset)
        read_only = req.method in ("GET", "HEAD") or fn.volatility in ("s", "i")
        return await self._run(
            req,
            st,
            claims,
            role,
            accept,
            count=count,
            offset=offset or 0,
            read_only=read_only,
            rpc=True,
        )

    # ------------------------------------------------------------------ execution and the answer
    async def _run(
        self,
        req: Request,
        st: Statement,
        claims: dict,
        role: str,
        accept: str,
        *,
        count: str | None,
        status: int = 200,
        offset: int = 0,
        read_only: bool = False,
        representation: bool = True,
        location: tuple[str, str] | None = None,
        rpc: bool = False,
    ) -> Response:
        result = await self.db.run(
            Caller(role, claims, self._caller(req, claims, role)),
            Execution(
                st,
                req.method,
                req.path,
                read_only=read_only,
                single_object=accept == OBJECT_MEDIA and not st.returns_scalar,
            ),
        )
        body, nrows, total = result.body, result.nrows, result.total
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
            headers["content-range"] = (
                f"{offset}-{offset + nrows - 1}/{total_s}" if nrows else f"*/{total_s}"
            )
            if total is not None and nrows and nrows < total:
                status = 206
            if total is not None and nrows == 0 and offset > 0 and offset >= total:
                raise pgrst(
                    "PGRST103",
                    "Requested range not satisfiable",
                    f"An offset of {offset} was requested, but there are only {total} rows.",
                    headers={"content-range": f"*/{total}"},
                )
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

    def _location(self, target: tuple[str, str], body: str) -> str:
        name, schema = target
        rows = orjson.loads(body)
        t = self.cache.table(schema, name) if self.cache else None
        if not rows or t is None or not t.pk:
            return f"/{name}"
        from urllib.parse import quote

        return f"/{name}?" + "&".join(f"{k}=eq.{quote(str(rows[0].get(k)))}" for k in t.pk)


def _refuse_nul(value) -> None:
    """400 for a NUL anywhere in a JSON body: Postgres text cannot hold it (iterative walk)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                raise pgrst(
                    "LB400",
                    "The body contains a NUL character",
                    None,
                    "Remove the \\u0000 character; Postgres text cannot hold it.",
                )
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def create_app(cfg: GatewayConfig) -> Gateway:
    return Gateway(cfg)
