"""Shared by every LLM backend: one HTTP client per loop. The provider contract (`Provider`,
`ModelChoice`) is `services.ports`, the error the UI shows is `services.errors.LLMError`."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from pharmgpt.services.errors import LLMError
from pharmgpt.services.ports import Provider

__all__ = ["LLMError", "PerLoop", "Provider"]

T = TypeVar("T")


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
