"""Groq chat completions, streamed through the official `groq` SDK.

The SDK's own retries are disabled: it would retry after we have no control over fallback,
and it cannot know whether text was already shown. `rag.llm.retry` decides instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
from groq import APIConnectionError, APIError, APIStatusError, AsyncGroq
from pharmgpt.rag.llm.base import PerLoop
from pharmgpt.rag.llm.retry import (
    Delta,
    Failure,
    Kind,
    RetryPolicy,
    failure_from_status,
    stream_with_fallback,
)
from pharmgpt.services.model_names import GROQ_DEFAULT_MODELS

# The first is the default answer model, the rest are tried in order when it is unavailable
# (PHARMGPT_LLM_FALLBACK_MODELS replaces those); the names live in services/model_names.py.
DEFAULT_MODELS = list(GROQ_DEFAULT_MODELS)


class GroqProvider:
    """Streams from Groq; the first model is the default, the rest are fallbacks."""

    name = "groq"

    def __init__(
        self,
        api_key: str,
        *,
        models: list[str] | None = None,
        base_url: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 3,
        max_wait_s: float = 30.0,
    ):
        self.models = list(models or DEFAULT_MODELS)
        if not self.models:
            raise ValueError("GroqProvider needs at least one model")
        self.policy = RetryPolicy(max_retries=max_retries, max_wait_s=max_wait_s)
        self._clients = PerLoop(
            lambda: AsyncGroq(
                api_key=api_key,
                base_url=base_url,
                timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                max_retries=0,
            )
        )

    async def catalogue(self) -> list[str]:
        return list(self.models)

    def stream(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int = 1024,
    ) -> AsyncIterator[str]:
        """Yield text deltas; an explicit `model` is tried first, the configured list after."""
        models = [model, *(m for m in self.models if m != model)] if model else self.models

        def attempt(name: str) -> AsyncIterator[Delta]:
            return self._attempt(name, messages, temperature, max_tokens)

        return stream_with_fallback(
            attempt,
            models,
            self.policy,
            service="the Groq service",
            auth_message=(
                "The Groq API key was refused. Ask your administrator to check the "
                "GROQ_API_KEY setting."
            ),
        )

    async def _attempt(
        self, model: str, messages: list[dict], temperature: float, max_tokens: int
    ) -> AsyncIterator[Delta]:
        client = self._clients.get()
        try:
            stream = await client.chat.completions.create(
                model=model,
                messages=cast(Any, messages),
                temperature=temperature,
                max_tokens=max_tokens,
                stream=True,
            )
        except APIStatusError as exc:
            raise failure_from_status(exc.status_code, exc.body, exc.response.headers) from exc
        except APIConnectionError as exc:  # includes APITimeoutError
            raise Failure(Kind.NETWORK, str(exc)) from exc
        try:
            async for chunk in stream:
                if chunk.choices:
                    choice = chunk.choices[0]
                    yield choice.delta.content, choice.finish_reason
        except (APIError, httpx.HTTPError) as exc:  # error event or connection lost mid-stream
            raise Failure(Kind.TRANSIENT, f"{type(exc).__name__}: {exc}") from exc
        finally:
            await stream.close()

    async def aclose(self) -> None:
        """Release this event loop's connection pool (optional; useful in tests and shutdown)."""
        await self._clients.aclose(lambda client: client.close())
