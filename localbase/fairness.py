"""Per-user limits on concurrent database work, so one user cannot fill the pool.

Each caller (by JWT `sub`, else role and client address) may hold at most
`per_user` pooled connections at once; further requests of the same caller
wait their turn (up to a deadline, then 429) while other callers still find
free connections. The service role is the app server itself and is not
limited here.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .errors import pgrst


@dataclass
class _Slot:
    sem: asyncio.Semaphore
    users: int = 0  # holders + waiters; the slot is dropped at zero


class UserSlots:
    def __init__(self, per_user: int, wait_s: float):
        self.per_user = per_user
        self.wait_s = wait_s
        self._slots: dict[str, _Slot] = {}

    def in_use(self, key: str) -> int:
        slot = self._slots.get(key)
        return 0 if slot is None else slot.users

    @asynccontextmanager
    async def hold(self, key: str | None):
        if key is None or self.per_user <= 0:
            yield
            return
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(asyncio.Semaphore(self.per_user))
        slot.users += 1
        try:
            try:
                async with asyncio.timeout(
                    self.wait_s
                ):  # cancellation-safe, unlike wait_for's race
                    await slot.sem.acquire()
            except TimeoutError:
                raise pgrst(
                    "LB429",
                    "Too many of your requests are waiting for the database",
                    f"at most {self.per_user} run at once per user",
                    "Wait for earlier requests to finish.",
                    headers={"Retry-After": "1"},
                ) from None
            try:
                yield
            finally:
                slot.sem.release()
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(key) is slot:
                del self._slots[key]
