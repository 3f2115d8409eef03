"""Any OpenAI-compatible chat server (llama.cpp, vLLM, Ollama), spoken to with plain httpx.

No SDK: these servers differ in small ways, and reading Server-Sent Events ourselves keeps
the behaviour identical to `GroqProvider` (same retry, fallback and truncation rules).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pharmgpt.rag.llm.base import PerLoop
from pharmgpt.rag.llm.retry import (
    Delta,
    Failure,
    Kind,
    RetryPolicy,
    failure_from_status,
    stream_with_fallback,
)


class OpenAICompatProvider:
    """Streams from `{base_url}/chat/completions` (base_url usually ends in `/v1`).

    Its catalogue is `model` (OPENAI_MODEL) when given, else what the server lists at
    `{base_url}/models` (asked on first use, never at start-up, and remembered)."""

    name = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 2,
        *,
        max_wait_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model or None
        self._listed: list[str] | None = None
        self.policy = RetryPolicy(max_retries=max_retries, max_wait_s=max_wait_s)
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._clients = PerLoop(
            lambda: httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
            )
        )

    async def catalogue(self) -> list[str]:
        if self.model:
            return [self.model]
        if self._listed is None:
            self._listed = await self._list_models()
        return list(self._listed)

    async def _list_models(self) -> list[str]:
        from pharmgpt.services.errors import LLMError

        url = f"{self.base_url}/models"
        hint = "Set OPENAI_MODEL to the model it serves."
        try:
            resp = await self._clients.get().get(
                url, headers={k: v for k, v in self._headers.items() if k != "Accept"}
            )
            resp.raise_for_status()
            rows = resp.json().get("data") or []
            names = [r["id"] for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise LLMError(
                f"The language model server at {self.base_url} did not list its models. {hint}",
                details=f"{type(exc).__name__}: {exc}",
            ) from exc
        if not names:
            raise LLMError(f"The language model server at {self.base_url} lists no models. {hint}")
        return names

    def stream(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int = 1024,
    ) -> AsyncIterator[str]:
        """Yield text deltas from one model (a local server has no fallback list).

        The engine passes the model it chose from `catalogue()`; without one, OPENAI_MODEL."""
        name = model or self.model
        if name is None:
            raise ValueError("no model: pass one from catalogue(), or set OPENAI_MODEL")

        def attempt(name: str) -> AsyncIterator[Delta]:
            return self._attempt(name, messages, temperature, max_tokens)

        service = f"the language model server at {self.base_url}"
        return stream_with_fallback(
            attempt,
            [name],
            self.policy,
            service=service,
            auth_message=f"{service[:1].upper()}{service[1:]} refused the API key. "
            "Ask your administrator to check the key setting.",
        )

    async def _attempt(
        self, model: str, messages: list[dict], temperature: float, max_tokens: int
    ) -> AsyncIterator[Delta]:
        payload = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": True,
        }
        client = self._clients.get()
        url = f"{self.base_url}/chat/completions"
        started = False
        try:
            async with client.stream("POST", url, json=payload, headers=self._headers) as resp:
                if resp.status_code >= 400:
                    raw = await resp.aread()
                    raise failure_from_status(resp.status_code, _json_or_text(raw), resp.headers)
                started = True
                finished = False
                async for data in _sse_data(resp):
                    if data.strip() == "[DONE]":
                        if not finished:  # some servers only say [DONE]
                            yield None, "stop"
                        return
                    chunk = _decode_chunk(data)
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        reason = choice.get("finish_reason")
                        finished = finished or bool(reason)
                        yield delta.get("content"), reason
        except httpx.HTTPError as exc:
            kind = Kind.TRANSIENT if started else Kind.NETWORK
            raise Failure(kind, f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Release this event loop's connection pool (optional; useful in tests and shutdown)."""
        await self._clients.aclose(lambda client: client.aclose())


async def _sse_data(resp: httpx.Response) -> AsyncIterator[str]:
    """The `data` of each complete event; an unterminated last event is dropped (per spec)."""
    data: list[str] = []
    event: str | None = None
    async for line in resp.aiter_lines():
        if not line:
            if data:
                joined = "\n".join(data)
                if event == "error":
                    raise _stream_error(joined)
                yield joined
            data, event = [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value


def _decode_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise Failure(Kind.TRANSIENT, f"malformed stream chunk: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise Failure(Kind.TRANSIENT, f"unexpected stream chunk: {data[:200]!r}")
    if chunk.get("error"):
        raise _stream_error(data)
    return chunk


def _stream_error(data: str) -> Failure:
    """An error reported inside a 200 stream (server overloaded, model crashed...)."""
    body = _json_or_text(data.encode())
    error = body.get("error", body) if isinstance(body, dict) else body
    message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    return Failure(Kind.TRANSIENT, f"error in stream: {message[:300]}")


def _json_or_text(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
