"""uploads.json: each known user's upload history (filename, size, time)."""

from __future__ import annotations

from .records import LegacyUpload, LegacyUser
from .text import clean_text
from .times import parse_time
from .tree import KindReader, LegacyTree
from .users import UserReader


class UploadReader(KindReader):
    def __init__(self, tree: LegacyTree, users: UserReader):
        super().__init__(tree)
        self.user_reader = users
        self._uploads: dict[str, list] | None = None

    def uploads(self, user: LegacyUser) -> list[LegacyUpload]:
        if self._uploads is None:
            raw = self.tree.load_object(self.root / "uploads.json") or {}
            known = {u.legacy_id for u in self.user_reader.users()}
            for key in raw:
                if key not in known:
                    self.problems.add(
                        "uploads.json",
                        f"upload history for unknown user {key}; not migrated",
                        key=key,
                    )
            self._uploads = {k: v for k, v in raw.items() if k in known}
        raw = self._uploads.get(user.legacy_id)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problems.add(
                "uploads.json",
                f"user {user.legacy_id}: not a list; not migrated",
                key=user.legacy_id,
            )
            return []
        out = []
        for i, e in enumerate(raw):
            name = e.get("filename") if isinstance(e, dict) else None
            size = e.get("file_size") if isinstance(e, dict) else None
            if isinstance(size, str) and size.strip().isdigit():
                size = int(size)
            if (
                not isinstance(name, str)
                or not name.strip()
                or not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
            ):
                self.problems.add(
                    "uploads.json",
                    f"user {user.legacy_id}: entry #{i} lacks a filename or a "
                    "valid file_size; not migrated",
                    key=f"{user.legacy_id}#{i}",
                )
                continue
            name = (
                "".join(ch for ch in clean_text(name.strip())[0] if ch.isprintable())[-255:]
                or "file"
            )
            out.append(LegacyUpload(i, name, size, parse_time(e.get("timestamp"), self.tz)))
        return out
