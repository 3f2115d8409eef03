"""conversations_<id>/conversations.json: each conversation with its messages, normalised
(clean text, UTC times, a strict order); unusable parts are reported and skipped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import ids
from .records import LegacyConversation, LegacyMessage, LegacyUser
from .text import clean_text
from .times import parse_time
from .tree import KindReader, LegacyTree

MAX_CONTENT = 200_000  # messages.content CHECK
ROLES = ("user", "assistant", "system")
ONE_US = timedelta(microseconds=1)


class ConversationReader(KindReader):
    def __init__(self, tree: LegacyTree):
        super().__init__(tree)
        self.last_keys: list[str] = []  # every key of the file read last, usable or not

    def conversations_file(self, user: LegacyUser) -> Path:
        return self.root / f"conversations_{user.legacy_id}" / "conversations.json"

    def conversation_keys(self, user: LegacyUser) -> list[str]:
        raw = self.tree.load_object(self.conversations_file(user))
        return list(raw or {})

    def conversations(self, user: LegacyUser) -> Iterator[LegacyConversation]:
        """The user's conversations, normalised; unusable ones are reported and skipped."""
        path = self.conversations_file(user)
        raw = self.tree.load_object(path)
        self.last_keys = list(raw or {})  # every key of the file just read, usable or not
        if not raw:
            return
        rel = self.tree.rel(path)
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        for key, entry in raw.items():
            conv = self._conversation(user, key, entry, rel, mtime)
            if conv is not None:
                yield conv

    def _conversation(
        self, user: LegacyUser, key: str, entry: Any, rel: str, mtime: datetime
    ) -> LegacyConversation | None:
        p = self.problems
        if not isinstance(entry, dict):
            p.add(
                rel,
                f"conversation {key}: a {type(entry).__name__}, not an object; not migrated",
                key=key,
            )
            return None
        conv_id = ids.conversation_id(user.legacy_id, key)
        if conv_id != key:
            p.add(
                rel,
                f"conversation {key!r}: key is not a UUID; migrated as {conv_id}",
                "warning",
                key=key,
            )
        msgs = entry.get("messages", [])
        if msgs is None:
            msgs = []
        if not isinstance(msgs, list):
            p.add(
                rel,
                f"conversation {key}: messages is a {type(msgs).__name__}, not a list; "
                "not migrated",
                key=key,
            )
            return None
        title = entry.get("title")
        if not isinstance(title, str) or not title.strip():
            p.add(rel, f"conversation {key}: title missing; 'New chat' used", "warning", key=key)
            title = "New chat"
        title, changed = clean_text(title.strip())
        if len(title) > 200:
            p.add(rel, f"conversation {key}: title cut to 200 characters", "warning", key=key)
            title = title[:200]
        model = entry.get("model")
        model = model[:200] if isinstance(model, str) and model else None
        created = parse_time(entry.get("created_at"), self.tz)
        first = next(
            (parse_time(m.get("timestamp"), self.tz) for m in msgs if isinstance(m, dict)), None
        )
        if created is None:
            created = first or mtime
            p.add(
                rel,
                f"conversation {key}: created_at missing or invalid; "
                f"{'first message time' if first else 'file time'} used",
                "warning",
                key=key,
            )
        messages: list[LegacyMessage] = []
        prev: datetime | None = None
        bad: list[str] = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                bad.append(f"#{i} is not an object")
                continue
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                bad.append(f"#{i} has role {role!r}")
                continue
            if not isinstance(content, str):
                bad.append(f"#{i} has no text content")
                continue
            if len(content) > MAX_CONTENT:
                bad.append(f"#{i} is longer than {MAX_CONTENT:,} characters")
                continue
            content, changed_c = clean_text(content)
            if changed_c:
                p.add(
                    rel,
                    f"conversation {key}: message #{i} had NUL or invalid characters (replaced by "
                    "U+FFFD)",
                    "warning",
                    key=key,
                )
            t = parse_time(m.get("timestamp"), self.tz)
            if t is None:
                stand_in = (
                    "the conversation's created_at is used"
                    if prev is None
                    else "1 µs after the previous message's time is used (keeps the order)"
                )
                p.add(
                    rel,
                    f"conversation {key}: message #{i} has no valid timestamp; {stand_in}",
                    "warning",
                    key=key,
                )
                t = prev or created
            if prev is not None and t <= prev:
                t = prev + ONE_US  # keep the legacy order: the services order by time, then id
            prev = t
            messages.append(LegacyMessage(i, role, content, t))
        if bad:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            p.add(rel, f"conversation {key}: {len(bad)} message(s) not migrated: {shown}", key=key)
        if changed:
            p.add(
                rel, f"conversation {key}: title had NUL or invalid characters", "warning", key=key
            )
        return LegacyConversation(key, conv_id, title, model, created, messages, len(msgs))
