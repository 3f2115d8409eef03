"""What the reader could not take as it found it: file, reason, severity, deduplicated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the source root
    reason: str
    severity: str  # error: not migrated; warning: migrated with a change; info: nothing lost
    key: str | None = None
    extra: dict | None = None  # structured facts behind the reason (recovered/lost counts, ...)

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "reason": self.reason,
            "severity": self.severity,
            "key": self.key,
            **(self.extra or {}),
        }


class Problems:
    """Deduplicated (a tree is read more than once), with a cap on what is kept in memory."""

    def __init__(self, cap: int = 10_000):
        self.cap = cap
        self._items: dict[tuple, Problem] = {}
        self.dropped = 0
        self.by_severity: dict[str, int] = {}

    def add(
        self,
        file: str | Path,
        reason: str,
        severity: str = "error",
        key: str | None = None,
        extra: dict | None = None,
    ) -> None:
        p = Problem(str(file), reason, severity, key, extra)
        k = (p.file, p.reason, p.key)
        if k in self._items:
            return
        self.by_severity[severity] = self.by_severity.get(severity, 0) + 1
        if len(self._items) >= self.cap:
            self.dropped += 1
            return
        self._items[k] = p

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items) + self.dropped

    def as_list(self, limit: int | None = None) -> list[dict]:
        items = list(self._items.values())
        return [p.as_dict() for p in (items if limit is None else items[:limit])]
