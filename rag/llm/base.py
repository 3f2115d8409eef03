"""The provider contract shared by every LLM backend, and the one error type the UI shows."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pharmgpt.services.errors import PharmGPTError

T = TypeVar("T")


class LLMError(PharmGPTError):
    """A failure a pharmacist can act on.

    `message` is plain language for the page; `details` keeps the raw provider error for logs.
    `partial` is True when some answer text was already streamed before the failure, so the UI
    can mark what it showed as incomplete instead of presenting it as a finished answer.
    """

    code = "llm"

    def __init__(self, message: str, *, details: Any = None, partial: bool = False):
        super().__init__(message, details=details)
        self.partial = partial


@runtime_checkable
class Provider(Protocol):
    """A chat model that streams text deltas.

    `stream` is an async generator: callers may stop early (`break`, or better
    `contextlib.aclosing(...)` / `aclose()`), which closes the underlying HTTP response.
    """

    name: str

    async def catalogue(self) -> list[str]:
        """The models this provider offers, its default first (the one catalogue, issue 13)."""
        ...

    def stream(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int = 1024,
    ) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class ModelChoice:
    """The model an answer uses: the user's preference when the provider offers it, else its default."""

    model: str
    available: list[str]
    notice: str | None = None  # set when a stored preference is not offered here


def choose_model(available: list[str], preferred: str | None) -> ModelChoice:
    if not available:
        raise LLMError(
            "The language model server offers no models. Ask your administrator to set OPENAI_MODEL."
        )
    if not preferred or preferred in available:
        return ModelChoice(preferred or available[0], list(available))
    return ModelChoice(
        available[0],
        list(available),
        f"Your saved model {preferred} is not offered here, so answers use {available[0]}. "
        "Choose another in Settings to change it.",
    )


class PerLoop(Generic[T]):
    """One HTTP client per event loop.

    httpx pools connections per loop; Streamlit may run each interaction in a fresh loop, and
    reusing a pooled connection from a dead loop fails. Clients are created lazily (never at
    import) and forgotten once their loop is closed.
    """

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            # a client can keep its loop alive through pooled sockets; drop those of closed loops
            for dead in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[dead]
            client = self._factory()
            self._by_loop[loop] = client
        return client

    async def aclose(self, close: Callable[[T], Awaitable[object]]) -> None:
        """Close the client that belongs to the running loop (others cannot be awaited here)."""
        client = self._by_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await close(client)
