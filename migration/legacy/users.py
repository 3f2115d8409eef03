"""users.json (and sessions.json, for "last seen"): the accounts, validated and normalised the
way sign-in reads names, with case collisions renamed deterministically."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .. import ids
from .records import LegacyUser
from .text import normalize_username
from .times import EPOCH, parse_time
from .tree import KindReader, LegacyTree

HEX64 = re.compile(r"^[0-9a-f]{64}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UserReader(KindReader):
    def __init__(self, tree: LegacyTree):
        super().__init__(tree)
        self._users: list[LegacyUser] | None = None
        self.session_count: int | None = None

    def users(self) -> list[LegacyUser]:
        """Valid users in users.json order. Invalid entries are reported once."""
        if self._users is not None:
            return self._users
        raw = self.tree.load_object(self.root / "users.json")
        if raw is None:
            self.problems.add("users.json", "missing: no users can be migrated")
            raw = {}
        last_seen = self._sessions_last_seen()
        out = [u for name, entry in raw.items() if (u := self._user(name, entry, last_seen))]
        self._rename_collisions(out)
        self._users = out
        return out

    def _rename_collisions(self, users: list[LegacyUser]) -> None:
        """The old app told `Alice` from `alice`; sign-in now ignores case (and Unicode form), so
        two such accounts cannot both keep their name. The rule, deterministic for a given
        users.json: the one that signed up first (earliest valid created_at; without one, after
        those with one; ties in users.json order) keeps the name; each other one, in that same
        order, becomes `<her own name>-2`, `-3`, ... (the first suffix no name in users.json
        uses). She keeps her md5 id, folders, uploads and password."""
        groups: dict[str, list[int]] = {}
        for i, u in enumerate(users):
            groups.setdefault(u.username.lower(), []).append(i)
        taken = set(groups)
        for members in groups.values():
            if len(members) < 2:
                continue
            members.sort(
                key=lambda i: (users[i].created_at is None, users[i].created_at or EPOCH, i)
            )
            keeper = users[members[0]]
            n = 1
            for i in members[1:]:
                u = users[i]
                while True:
                    n += 1
                    suffix = f"-{n}"
                    new = u.username[: 128 - len(suffix)] + suffix
                    if new.lower() not in taken:
                        break
                taken.add(new.lower())
                u.renamed_from, u.username = u.username, new
                self.problems.add(
                    "users.json",
                    f"user {u.raw_username!r}: the same name as {keeper.raw_username!r} ignoring "
                    "case and Unicode form, which sign-in no longer tells apart; "
                    f"{keeper.username!r} signed up first and keeps the name, this account is "
                    f"migrated as {new!r} "
                    "(same password; signing in with the old name and password says so)",
                    "warning",
                    key=u.legacy_id,
                    extra={"renamed_from": u.renamed_from, "renamed_to": new},
                )

    def renames(self) -> list[dict]:
        """The accounts migrated under a new name (see _rename_collisions)."""
        return [
            {
                "legacy_username": u.raw_username,
                "username": u.username,
                "legacy_id": u.legacy_id,
                "user_id": u.user_id,
            }
            for u in self.users()
            if u.renamed_from is not None
        ]

    def _user(self, name: str, entry: Any, last_seen: dict[str, datetime]) -> LegacyUser | None:
        legacy_id = ids.legacy_user_id(name)
        where = "users.json"
        if not isinstance(entry, dict):
            self.problems.add(
                where,
                f"user {name!r}: entry is a {type(entry).__name__}, not an object; not migrated",
                key=legacy_id,
            )
            return None
        username = normalize_username(name)
        if not 1 <= len(username) <= 128 or CONTROL.search(username):
            self.problems.add(
                where,
                f"user {name!r}: username is empty, longer than 128 characters or "
                "has control characters; not migrated",
                key=legacy_id,
            )
            return None
        if username != name:
            self.problems.add(
                where,
                f"user {name!r}: username normalised to {username!r} (how sign-in reads it)",
                "warning",
                key=legacy_id,
            )
        pw, salt = entry.get("password_hash"), entry.get("salt")
        if not isinstance(pw, str) or not HEX64.match(pw.strip().lower()):
            self.problems.add(
                where,
                f"user {name!r}: password_hash missing or not 64 hex characters; not migrated",
                key=legacy_id,
            )
            return None
        if not isinstance(salt, str) or not salt or len(salt) > 128:
            self.problems.add(
                where, f"user {name!r}: salt missing or invalid; not migrated", key=legacy_id
            )
            return None
        stored = entry.get("user_id")
        if stored is not None and stored != legacy_id:
            self.problems.add(
                where,
                f"user {name!r}: user_id {stored!r} is not md5(username); the folders "
                f"are read under {legacy_id}",
                "warning",
                key=legacy_id,
            )
        created = parse_time(entry.get("created_at"), self.tz)
        if created is None:
            self.problems.add(
                where,
                f"user {name!r}: created_at missing or invalid; the migration time is used",
                "warning",
                key=legacy_id,
            )
        return LegacyUser(
            username, name, legacy_id, pw.strip().lower(), salt, created, last_seen.get(name)
        )

    def _sessions_last_seen(self) -> dict[str, datetime]:
        raw = self.tree.load_object(self.root / "sessions.json") or {}
        out: dict[str, datetime] = {}
        for entry in raw.values():
            if not isinstance(entry, dict) or not isinstance(entry.get("username"), str):
                continue
            t = parse_time(entry.get("created_at"), self.tz)
            if t is not None and (entry["username"] not in out or t > out[entry["username"]]):
                out[entry["username"]] = t
        self.session_count = len(raw)
        return out

    def sessions(self) -> int:
        if self.session_count is None:
            self._sessions_last_seen()
        return self.session_count
