"""The bridge between Streamlit's synchronous script threads and async services.

One event loop runs in a daemon thread for the whole process; the supabase
client and its HTTP pool live on it (DESIGN D6). Pages call `run(coro)` and
`stream(async_iterator)`; nothing here starts until first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Runtime:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def _main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=_main, name="pharmgpt-runtime", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the runtime loop and wait for its result."""
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(
                "run() called from the runtime loop itself; await the coroutine instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stream(self, agen: AsyncIterator[T], timeout: float | None = None) -> Iterator[T]:
        """Iterate an async iterator from synchronous code, item by item.

        Closing the returned generator (e.g. a stopped stream) closes `agen` on the loop.
        """
        loop = self.loop
        try:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(agen.__anext__(), loop).result(timeout)
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                asyncio.run_coroutine_threadsafe(aclose(), loop).result(timeout)

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(5)
                self._loop.close()
            self._loop = None
            self._thread = None


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    return get_runtime().run(coro, timeout)


def stream(agen: AsyncIterator[T], timeout: float | None = None) -> Iterator[T]:
    return get_runtime().stream(agen, timeout)
