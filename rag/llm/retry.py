"""Retry, model-fallback and truncation rules shared by every provider.

Providers only translate their wire errors into `Failure`; the decisions (retry or not, how
long to wait, when to fall back, what the pharmacist is told) live here so both backends
behave the same way.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from pharmgpt.services.errors import LLMError

# (text delta or None, finish_reason or None) as read from one streamed chunk.
Delta = tuple[str | None, str | None]
Attempt = Callable[[str], AsyncIterator[Delta]]

MODEL_GONE_CODES = frozenset({"model_not_found", "model_decommissioned"})
# finish reasons that mean the text stopped before the model finished its answer
TRUNCATED = {
    "length": "it reached the maximum answer length. Ask a narrower question or for a "
    "shorter answer",
    "content_filter": "the provider's content filter stopped it",
}


class Kind(enum.Enum):
    TRANSIENT = "transient"  # 429 / 5xx / bad stream: retry this model, then fall back
    NETWORK = "network"  # cannot connect / timed out: retry, then stop (same host for all models)
    MODEL = "model"  # model unknown or decommissioned: next model at once
    AUTH = "auth"  # key refused: retrying cannot help
    FATAL = "fatal"  # the request itself is wrong: retrying cannot help


class Failure(Exception):
    """One failed attempt, normalised from whatever the transport raised."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def summary(self, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "kind": self.kind.value,
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry one model, and how long to wait in between.

    `max_wait_s` caps every wait; a server asking for a longer pause (e.g. a daily token quota)
    is not waited on at all: we move to the next model instead of retrying into the same limit.
    """

    max_retries: int = 3
    base_s: float = 0.5
    max_wait_s: float = 30.0

    def backoff(self, retry: int) -> float:
        """Exponential backoff with jitter, so parallel sessions do not retry in lockstep."""
        return min(self.max_wait_s, self.base_s * 2**retry) * random.uniform(0.5, 1.0)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` / `retry-after` (number or HTTP date), else None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def failure_from_status(
    status: int, body: object, headers: Mapping[str, str] | None = None
) -> Failure:
    """Classify an HTTP error response (OpenAI-style `{"error": {...}}` body or raw text)."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    code: str | None = None
    if isinstance(error, Mapping):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or error)
    else:
        message = str(error or f"HTTP {status}")
    message = message[:300]
    if status in (401, 403):
        kind = Kind.AUTH
    elif status == 404 or code in MODEL_GONE_CODES:
        kind = Kind.MODEL
    elif status in (408, 409, 425, 429) or status >= 500:
        kind = Kind.TRANSIENT
    else:
        kind = Kind.FATAL
    return Failure(kind, message, status=status, code=code, retry_after=parse_retry_after(headers))


def _exhausted(service: str, models: list[str], failures: list[dict[str, Any]]) -> LLMError:
    service_cap = service[:1].upper() + service[1:]
    kinds = {f["kind"] for f in failures}
    if kinds == {Kind.MODEL.value}:
        names = ", ".join(models)
        msg = (
            f"None of the configured language models ({names}) is available on {service}. "
            "Ask your administrator to update the model list."
        )
    elif any(f["status"] == 429 for f in failures):
        msg = (
            f"{service_cap} is limiting how many questions can be answered right now. "
            "Please wait a minute and ask again."
        )
    else:
        msg = (
            f"{service_cap} is having problems right now and could not answer. "
            "Please try again in a few minutes."
        )
    return LLMError(msg, details=failures)


async def stream_with_fallback(
    attempt: Attempt,
    models: list[str],
    policy: RetryPolicy,
    *,
    service: str,
    auth_message: str,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[str]:
    """Yield text from the first model that answers, retrying and falling back as needed.

    Retries happen only before the first token: after that a retry would repeat text the
    pharmacist has already seen, so a broken stream becomes an error marked `partial`.
    """
    failures: list[dict[str, Any]] = []
    for model in models:
        retry = 0
        while True:
            sent = False
            finish: str | None = None
            failure: Failure | None = None
            chunks = attempt(model)
            try:
                async for text, reason in chunks:
                    if reason:
                        finish = reason
                    if text:
                        sent = True
                        yield text
            except Failure as exc:
                failure = exc
            finally:
                await chunks.aclose()

            if sent or (failure is None and finish is not None):
                if failure is not None or finish is None:
                    details = failure.summary(model) if failure else {"model": model}
                    raise LLMError(
                        f"The answer was cut off because the connection to {service} dropped. "
                        "The text above is incomplete; please ask again.",
                        details={**details, "reason": "stream ended early"},
                        partial=True,
                    )
                if finish in TRUNCATED:
                    raise LLMError(
                        f"The answer was cut off because {TRUNCATED[finish]}.",
                        details={"model": model, "finish_reason": finish},
                        partial=sent,
                    )
                return
            if failure is None:  # ended with neither text nor finish_reason
                failure = Failure(Kind.TRANSIENT, "empty stream without a finish reason")

            failures.append(failure.summary(model))
            if failure.kind is Kind.AUTH:
                raise LLMError(auth_message, details=failures)
            if failure.kind is Kind.FATAL:
                raise LLMError(
                    f"{service[:1].upper() + service[1:]} rejected the request "
                    f"(HTTP {failure.status}: {failure.message}).",
                    details=failures,
                )
            if failure.kind is Kind.MODEL:
                break
            wait = failure.retry_after
            if retry >= policy.max_retries or (wait is not None and wait > policy.max_wait_s):
                if failure.kind is Kind.NETWORK:
                    raise LLMError(
                        f"Could not reach {service}. Check the network connection and try again.",
                        details=failures,
                    )
                break
            await sleep(policy.backoff(retry) if wait is None else wait)
            retry += 1
    raise _exhausted(service, models, failures)
