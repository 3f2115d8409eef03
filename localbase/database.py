"""Statement execution for the gateway: everything that touches a Postgres connection.

The HTTP layer (gateway.py) parses and authenticates a request, builds one `Statement`,
and hands it here with the `Caller` it runs as; it gets back a `Result` (the JSON body,
the row count, the total) or an `ApiError`. It never holds a connection. Here: the pool,
one transaction per request on a pooled `authenticator` connection that switches to the
caller's role (`set_config('role', ..., true)`), applies that role's own settings, exposes
the claims to `auth.uid()`, runs the statement and fetches its one row; the response-size
cap, the per-user share of the pool, "database down" answered within a second, Postgres
errors in PostgREST's shape, and the schema cache (loaded and reloaded on NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field

import orjson
import psycopg
from psycopg import AsyncRawCursor
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from . import schema_cache
from .errors import ApiError, pgrst, status_for_sqlstate
from .fairness import UserSlots
from .sqlbuilder import MUTATION_TAIL, Statement

# a request waits this long for a pooled connection before the database is probed directly;
# an unreachable database is then reported at once, and for DB_DOWN_HOLD_S to the next requests
DB_PROBE_AFTER_S = 1.0
DB_PROBE_TIMEOUT_S = 1
DB_DOWN_HOLD_S = 2.0

log = logging.getLogger(__name__)

_CONTEXT_SQL = (
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),"
    " set_config('request.method', $3, true), set_config('request.path', $4, true),"
    " set_config('transaction_read_only', $5, true)"
)
_OVERSIZE_TAG = "LB507:"


@dataclass(frozen=True)
class DatabaseConfig:
    db_uri: str
    schemas: list[str] = field(default_factory=lambda: ["public"])
    anon_role: str = "anon"
    pool_min: int = 2
    pool_max: int = 10
    per_user_connections: int = 4
    pool_wait_s: float = 10.0
    max_response_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class Caller:
    """Who a statement runs as: the role and claims from the JWT, and whose share of the pool
    it uses (None: not limited)."""

    role: str
    claims: dict
    share: str | None


@dataclass(frozen=True)
class Execution:
    """One statement to run in one transaction, and how."""

    statement: Statement
    method: str  # request.method and request.path, for functions that read them
    path: str
    read_only: bool
    single_object: bool  # exactly one row or PGRST116; a write then rolls back


@dataclass(frozen=True)
class Result:
    body: str  # the JSON the statement built
    nrows: int
    total: int | None  # the count asked for with Prefer: count=…, else None


class Database:
    def __init__(self, cfg: DatabaseConfig):
        self.cfg = cfg
        self.pool: AsyncConnectionPool | None = None
        self.health_pool: AsyncConnectionPool | None = None
        self.cache: schema_cache.SchemaCache | None = None
        self._listener: asyncio.Task | None = None
        self.slots = UserSlots(cfg.per_user_connections, cfg.pool_wait_s)
        self._db_down_until = 0.0  # monotonic time until which the database counts as unreachable

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.pool = AsyncConnectionPool(
            self.cfg.db_uri,
            min_size=self.cfg.pool_min,
            max_size=self.cfg.pool_max,
            open=False,
            kwargs={"autocommit": True, "cursor_factory": AsyncRawCursor, "prepare_threshold": 3},
        )
        await self.pool.open(wait=True, timeout=30)
        # readiness never queues behind user queries
        self.health_pool = AsyncConnectionPool(
            self.cfg.db_uri, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
        )
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
        log.info(
            "schema cache loaded: %d tables, %d functions",
            len(self.cache.tables),
            len(self.cache.functions),
        )

    async def _listen(self) -> None:
        """Reload the schema cache on `NOTIFY pgrst, 'reload schema'`, like PostgREST."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.cfg.db_uri, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN pgrst")
                    async for note in conn.notifies():
                        if note.payload in ("", "reload schema"):
                            await self.reload_schema()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away; try again shortly
                log.warning("schema listener: %s", e)
                await asyncio.sleep(2)

    async def health_error(self) -> str | None:
        """None when the database answers on the health connection, else why not."""
        try:
            assert self.health_pool is not None
            async with self.health_pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        except Exception as e:
            return str(e)
        return None

    # ------------------------------------------------------------------ reaching the database
    @contextlib.asynccontextmanager
    async def _connection(self):
        """A pooled connection. While the database cannot be reached at all, say so within about
        a second (503 PGRST001) instead of holding the request for the whole pool wait: a quick
        wait first, then a direct probe decides between "busy" (wait on) and "down"."""
        assert self.pool is not None
        if time.monotonic() < self._db_down_until:
            raise pgrst(
                "PGRST001",
                "Database client error. Retrying the connection.",
                "the database was unreachable a moment ago",
            )
        quick = min(DB_PROBE_AFTER_S, self.cfg.pool_wait_s)
        async with contextlib.AsyncExitStack() as held:
            try:
                conn = await held.enter_async_context(self.pool.connection(timeout=quick))
            except PoolTimeout:
                if not await self._database_answers():
                    self._db_down_until = time.monotonic() + DB_DOWN_HOLD_S
                    raise pgrst(
                        "PGRST001",
                        "Database client error. Retrying the connection.",
                        "the database cannot be reached",
                    ) from None
                conn = await held.enter_async_context(
                    self.pool.connection(timeout=max(0.1, self.cfg.pool_wait_s - quick))
                )
            yield conn

    async def _database_answers(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.cfg.db_uri, connect_timeout=DB_PROBE_TIMEOUT_S, autocommit=True
            )
        except psycopg.Error:
            return False
        await conn.close()
        return True

    # ------------------------------------------------------------------ execution
    async def run(self, caller: Caller, ex: Execution) -> Result:
        """Run `ex.statement` as `caller` in one transaction and fetch its one row."""
        st = ex.statement
        claims_json = orjson.dumps(caller.claims).decode()
        context = [caller.role, claims_json, ex.method, ex.path, "on" if ex.read_only else "off"]
        settings = self.cache.role_settings.get(caller.role, []) if self.cache is not None else []
        for name, value in settings:
            context += [name, value]
        context_sql = _context_sql(len(settings))
        sql = _size_capped(st.sql, self.cfg.max_response_bytes, abort=not ex.read_only)
        # a single-object mutation must roll back unless it touched exactly one row,
        # so it checks the count before COMMIT; everything else goes in one round trip
        must_check = ex.single_object and not ex.read_only
        try:
            async with self.slots.hold(caller.share), self._connection() as conn:
                try:
                    if must_check:
                        async with conn.transaction():
                            await conn.execute(context_sql, context)
                            body, nrows, total, size = await (
                                await conn.execute(sql, st.params)
                            ).fetchone()
                            self._check_size(body, size)
                            if nrows != 1:
                                raise _not_one_row(nrows)
                    else:
                        async with conn.pipeline():
                            async with conn.transaction():
                                await conn.execute(context_sql, context)
                                cur = await conn.execute(sql, st.params)
                                count_cur = (
                                    await conn.execute(st.count_sql, st.params)
                                    if st.count_sql
                                    else None
                                )
                        body, nrows, total, size = await cur.fetchone()
                        self._check_size(body, size)
                        if count_cur is not None:
                            plan = await count_cur.fetchone()
                            total = int(plan[0][0]["Plan"]["Plan Rows"])
                        if ex.single_object and nrows != 1:
                            raise _not_one_row(nrows)
                except psycopg.errors.Error as e:
                    if isinstance(e, psycopg.OperationalError) and conn.closed:
                        raise
                    raise self._pg_error(e, caller.role) from None
        except PoolTimeout as e:
            raise pgrst(
                "PGRST003", "Timed out acquiring connection from connection pool.", str(e)
            ) from None
        except psycopg.OperationalError as e:
            raise pgrst(
                "PGRST001", "Database client error. Retrying the connection.", str(e)
            ) from None
        return Result(body, nrows, total)

    def _check_size(self, body: str | None, size: int | None) -> None:
        if body is None and size is not None:
            raise self._too_large(size)

    def _too_large(self, size: int | str) -> ApiError:
        return pgrst(
            "LB507",
            "The response is larger than the gateway's limit",
            f"{size} bytes; the limit is {self.cfg.max_response_bytes} bytes",
            "Select fewer rows or columns (limit, Range, select) or page through the result.",
        )

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


def _not_one_row(nrows: int) -> ApiError:
    return pgrst(
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {nrows} rows",
        None,
    )


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
    capped = (
        f"SELECT CASE WHEN octet_length(_s.b) <= {cap} THEN _s.b ELSE {fallback} END, _s.n, _s.t, "
        "octet_length(_s.b)"
    )
    if sql.endswith(MUTATION_TAIL):  # a data-modifying WITH stays at the top level
        return sql[: -len(MUTATION_TAIL)] + f" {capped} FROM _q _s"
    return f"{capped} FROM ({sql}) _s(b, n, t)"
