"""The only way services reach data: the official supabase async client.

* the service-role client, for the auth/session services, admin work and the
  worker (DESIGN D2);
* a client per user carrying a server-minted JWT (sub = user id, role =
  authenticated, minutes of life, renewed before expiry), signed with the key
  the project trusts (ES256/RS256 with its `kid`, or an HS256 secret) and
  shaped like Supabase Auth's own tokens, so Postgres RLS decides what each
  user sees. Clients of different users never share a
  token; they do share one HTTP connection pool.

`execute()` runs a query with bounded retries (idempotent calls only) and maps
PostgREST errors onto PharmGPT's typed errors, so pages never see raw ones.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .config import Settings
from .errors import (
    AuthError,
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    PharmGPTError,
    ValidationError,
)

log = logging.getLogger(__name__)

_TRANSIENT_CODES = {
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
}
_VALIDATION_CODES = {
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
}
_MAX_USER_CLIENTS = 512


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # connect/read errors and timeouts
        return True
    return isinstance(exc, APIError) and (exc.code or "") in _TRANSIENT_CODES


def map_error(exc: BaseException, what: str = "request") -> PharmGPTError:
    """A typed error with a message fit for a page; the raw error stays in details."""
    if isinstance(exc, PharmGPTError):
        return exc
    if isinstance(exc, httpx.TransportError) or is_transient(exc):
        return BackendUnavailable(
            "The data store is not reachable right now. Please try again shortly.",
            details=repr(exc),
        )
    if not isinstance(exc, APIError):
        return PharmGPTError(f"Unexpected error during {what}", details=repr(exc))
    code = exc.code or ""
    details = {"code": code, "message": exc.message, "details": exc.details, "hint": exc.hint}
    if code in ("PGRST116", "P0002", "PGRST205", "PGRST202", "23503"):
        return NotFound(f"The {what} was not found.", details=details)
    if code == "23505":
        return Conflict(f"That {what} already exists.", details=details)
    if code == "42501":
        return Forbidden("You are not allowed to do that.", details=details)
    if code.startswith("PGRST3"):
        return AuthError("Your session has expired. Please sign in again.", details=details)
    if code in _VALIDATION_CODES:
        return ValidationError(f"The {what} was not accepted: {exc.message}", details=details)
    return PharmGPTError(f"The data store refused the {what}.", details=details)


@dataclass
class _UserClient:
    client: AsyncClient
    expires_at: float


class Backend:
    def __init__(self, settings: Settings):
        if not (
            settings.supabase_url
            and settings.supabase_service_role_key
            and settings.supabase_anon_key
        ):
            raise ValueError("Backend needs SUPABASE_URL and both API keys")
        self.settings = settings
        self._signer = settings.signing_key()
        self._issuer = settings.supabase_url.rstrip("/") + "/auth/v1"
        self._http: httpx.AsyncClient | None = None
        self._service: AsyncClient | None = None
        self._users: OrderedDict[str, _UserClient] = OrderedDict()

    def _options(self, bearer: str) -> AsyncClientOptions:
        return AsyncClientOptions(
            headers={"Authorization": f"Bearer {bearer}"},
            httpx_client=self._http,
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )

    async def start(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.request_timeout_s, connect=5.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                follow_redirects=True,
            )
        if self._service is None:
            self._service = await acreate_client(
                self.settings.supabase_url,
                self.settings.supabase_service_role_key,
                self._options(self.settings.supabase_service_role_key),
            )

    async def close(self) -> None:
        self._users.clear()
        self._service = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def service(self) -> AsyncClient:
        if self._service is None:
            raise RuntimeError("Backend.start() has not been awaited")
        return self._service

    def user_token(self, user_id: str) -> tuple[str, float]:
        """A token as Supabase Auth would issue it (iss/aud/role/sub/iat/exp/session_id), with
        `kid` in the header. session_id is fresh per token: PharmGPT's own session ids stay
        server-side."""
        ttl = self.settings.user_jwt_ttl_s
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": "authenticated",
            "role": "authenticated",
            "sub": str(user_id),
            "iat": now,
            "exp": now + ttl,
            "session_id": str(uuid.uuid4()),
            "aal": "aal1",
            "is_anonymous": False,
        }
        return self._signer.sign(claims), now + ttl

    async def for_user(self, user_id: str) -> AsyncClient:
        """The user's own client; a fresh token once less than a quarter of its life is left."""
        entry = self._users.get(user_id)
        if entry is not None and entry.expires_at - time.time() > self.settings.user_jwt_ttl_s / 4:
            self._users.move_to_end(user_id)
            return entry.client
        token, expires_at = self.user_token(user_id)
        client = await acreate_client(
            self.settings.supabase_url, self.settings.supabase_anon_key, self._options(token)
        )
        self._users[user_id] = _UserClient(client, expires_at)
        self._users.move_to_end(user_id)
        while len(self._users) > _MAX_USER_CLIENTS:
            self._users.popitem(last=False)
        return client

    def forget_user(self, user_id: str) -> None:
        self._users.pop(user_id, None)

    async def fetch_rows(
        self,
        make_query: Callable[[], Any],
        *,
        offset: int = 0,
        limit: int | None = None,
        what: str = "request",
    ) -> list[dict]:
        """Rows `offset`..`offset+limit-1` (all when `limit` is None) of a fresh query from
        `make_query()`, fetched in pages of at most `db_max_rows`.

        The API caps every response at its max-rows setting and answers a larger range with
        fewer rows, no error; pages no larger than the cap make a short page mean the end.
        The query needs a total order for the pages to be consistent.
        """
        page = max(1, self.settings.db_max_rows)
        out: list[dict] = []
        while limit is None or len(out) < limit:
            want = page if limit is None else min(page, limit - len(out))
            start = offset + len(out)
            r = await self.execute(make_query().range(start, start + want - 1), what=what)
            out.extend(r.data)
            if len(r.data) < want:
                break
        return out

    async def execute(self, query: Any, *, what: str = "request", idempotent: bool = True):
        """Run a postgrest query (anything with `.execute()`), retrying only what is safe to
        repeat."""
        attempts = self.settings.retry_attempts if idempotent else 1
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential_jitter(
                    multiplier=0.1, max=self.settings.retry_max_wait_s, jitter=0.1
                ),
                retry=retry_if_exception(is_transient),
                reraise=True,
            ):
                with attempt:
                    return await query.execute()
        except (APIError, httpx.HTTPError) as e:
            raise map_error(e, what) from None
        return None  # pragma: no cover - AsyncRetrying always returns or raises
