"""Streaming reader of the legacy file-based PharmGPT tree (../shared/legacy-format.md).

Nothing is loaded whole: users.json is the index, then one user's
conversations file, then one conversation's RAG folder at a time. Every
record comes out normalised (UTC times, clean text, message order made
strict) by the same code for the migrator and the verifier, so their
checksums agree. Anything odd is recorded in `Problems` with the file and the
reason; the rest keeps flowing.

Legacy Chroma stores are opened on a temporary copy: opening a store in
place rewrites its files, and the migration must never change its source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np

from . import ids

log = logging.getLogger(__name__)

DIMENSION = 384
MAX_CONTENT = 200_000  # messages.content CHECK
ROLES = ("user", "assistant", "system")
_MD5_DIR = re.compile(r"^(conversations|rag)_([0-9a-f]{32})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BACKUP = re.compile(r"\.backup_\d*")
_ONE_US = timedelta(microseconds=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- problems
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


# ---------------------------------------------------------------- records
@dataclass
class LegacyUser:
    username: str  # as the new app will look it up (NFKC, stripped)
    raw_username: str  # the users.json key
    legacy_id: str  # md5 of raw_username: the folders' names
    password_hash: str
    salt: str
    created_at: datetime | None
    last_seen: datetime | None = None
    renamed_from: str | None = None  # the name it had, when it collided with another (see users())

    @property
    def user_id(self) -> str:
        return ids.user_id(self.legacy_id)

    def checksum(self) -> str:
        return digest(
            [self.username, self.legacy_id, self.password_hash, self.salt, iso(self.created_at)]
        )


@dataclass
class LegacyMessage:
    index: int  # position in the legacy list: the message id derives from it
    role: str
    content: str
    created_at: datetime


@dataclass
class LegacyConversation:
    key: str  # the key in conversations.json
    id: str  # the uuid kept (or derived, for a key that is not one)
    title: str
    model: str | None
    created_at: datetime
    messages: list[LegacyMessage]
    total_messages: int  # including the ones that could not be migrated

    @property
    def updated_at(self) -> datetime:
        return self.messages[-1].created_at if self.messages else self.created_at

    def checksum(self) -> str:
        return digest(
            [
                self.id,
                self.title,
                self.model,
                iso(self.created_at),
                [m.index for m in self.messages],
                messages_digest(self.messages),
            ]
        )


@dataclass
class LegacyChunk:
    index: int
    legacy_id: str
    text: str
    embedding: np.ndarray | None  # None: missing or unusable (wrong dimension, NaN): re-embed


@dataclass
class LegacyDocument:
    doc_hash: str
    filename: str
    file_type: str
    added_at: datetime | None
    declared_chunks: int | None
    chunks: list[LegacyChunk] = field(default_factory=list)
    from_metadata: bool = True  # False: rebuilt from chunk metadata only

    def chunk_digest(self) -> str:
        return digest([[c.index, c.text] for c in self.chunks])


@dataclass
class LegacyUpload:
    index: int
    filename: str
    file_size: int
    uploaded_at: datetime | None


# ---------------------------------------------------------------- helpers
def digest(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    ).hexdigest()


def messages_digest(messages: list[LegacyMessage]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(
            json.dumps([m.index, m.role, m.content, iso(m.created_at)], ensure_ascii=False).encode()
        )
    return h.hexdigest()


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


def parse_time(value: Any, tz: tzinfo) -> datetime | None:
    """A legacy timestamp (naive local ISO, or an epoch number) as an aware UTC datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def clean_text(value: str) -> tuple[str, bool]:
    """Text Postgres will store: no NUL, no lone surrogates. Returns (text, changed)."""
    changed = False
    if "\x00" in value:
        value, changed = value.replace("\x00", "\ufffd"), True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        changed = True
    return value, changed


def normalize_username(name: str) -> str:
    """What services.users.normalize_username does at sign-in."""
    return unicodedata.normalize("NFKC", name or "").strip()


def read_text(path: Path, problems: Problems, rel: str) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as e:
        problems.add(rel, f"unreadable: {e.strerror or e}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.add(
            rel,
            f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); decoded as Windows-1252",
            "warning",
        )
        return data.decode("cp1252", errors="replace")


@dataclass
class Salvaged:
    """What a damaged top-level JSON object still yields."""

    entries: dict
    error: str | None  # None: the file parsed
    lost: list[str] = field(default_factory=list)  # keys of entries the damage cut, as they survive
    lost_unnamed: int = 0  # entries whose key itself was cut

    @property
    def lost_count(self) -> int:
        return len(self.lost) + self.lost_unnamed


def salvage_object(text: str) -> tuple[dict, str | None]:
    """Parse a top-level JSON object; when it is truncated or damaged, keep the
    complete leading entries. Returns (entries, error or None)."""
    s = salvage(text)
    return s.entries, s.error


def salvage(text: str) -> Salvaged:
    """`salvage_object`, plus the entries that were lost: the keys that still stand at the top
    level of the object in the text after the damage (a cut file keeps the key of the entry it
    cut; a damaged one may keep more)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        error = f"{e.msg}, line {e.lineno} column {e.colno}"
    else:
        if isinstance(value, dict):
            return Salvaged(value, None)
        return Salvaged({}, f"expected a JSON object, found {type(value).__name__}")
    dec = json.JSONDecoder()
    out: dict = {}

    def lost_from(i: int) -> Salvaged:
        keys, unnamed = _top_level_keys(text, i)
        return Salvaged(out, error, [k for k in keys if k not in out], unnamed)

    i = _skip_ws(text, 0)
    if not text.startswith("{", i):
        return Salvaged(out, error)
    i += 1
    while True:
        i = _skip_ws(text, i)
        start = i
        if i >= len(text) or text[i] != '"':
            return lost_from(start)
        try:
            key, i = dec.raw_decode(text, i)
            i = _skip_ws(text, i)
            if not text.startswith(":", i):
                return lost_from(start)
            value, i = dec.raw_decode(text, _skip_ws(text, i + 1))
        except json.JSONDecodeError:
            return lost_from(start)
        out[key] = value
        i = _skip_ws(text, i)
        if text.startswith(",", i):
            i += 1
            continue
        return lost_from(i)


def _top_level_keys(text: str, i: int) -> tuple[list[str], int]:
    """Keys of the top-level object found from `i` (the start of an entry) on, tracking nesting
    and strings; and how many entries there have their key cut off by the end of the text."""
    keys: list[str] = []
    unnamed = 0
    depth, expect_key, n = 0, True, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j, esc = i + 1, False
            while j < n:
                c = text[j]
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    break
                j += 1
            at_key = depth == 0 and expect_key
            if j >= n:  # the text ends inside this string
                unnamed += at_key
                break
            if at_key:
                k = _skip_ws(text, j + 1)
                if k >= n or text[k] == ":":
                    try:
                        keys.append(json.loads(text[i : j + 1]))
                    except ValueError:
                        unnamed += 1
                expect_key = False
            i = j + 1
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            expect_key = True
        i += 1
    return keys, unnamed


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def local_timezone_name() -> str:
    """The machine's IANA zone (the old app wrote naive local times)."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    return "UTC"


def load_timezone(name: str | None) -> tuple[tzinfo, str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = name or local_timezone_name()
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)"
        ) from None


_NOUNS = {
    "users.json": ("user", "users"),
    "sessions.json": ("session", "sessions"),
    "uploads.json": ("user's upload list", "users' upload lists"),
    "conversations.json": ("conversation", "conversations"),
    "documents_metadata.json": ("document entry", "document entries"),
}


def damage_summary(rel: str, got: Salvaged) -> str:
    """'2 complete conversations recovered, 1 lost (id ...)': what a damaged file still gave."""
    one, many = _NOUNS.get(Path(rel).name, ("entry", "entries"))
    n = len(got.entries)
    head = f"{n} complete {one if n == 1 else many} recovered"
    if got.lost_count:
        more = len(got.lost) - 10
        shown = ", ".join(got.lost[:10]) + (f" and {more} more" if more > 0 else "")
        parts = [shown] if got.lost else []
        if got.lost_unnamed:
            parts.append(f"{got.lost_unnamed} whose id was cut off")
        lost = f"{got.lost_count} lost ({'; '.join(parts)})"
    else:
        lost = "none of the damaged part can be identified"
    return (
        f"{head}, {lost}; the lost ones are not migrated (a cut file may also have lost entries "
        "that stood after the cut: those leave no trace and cannot be counted)"
    )


# ---------------------------------------------------------------- the source
class LegacySource:
    def __init__(
        self, root: Path | str, tz: tzinfo | str | None = None, problems: Problems | None = None
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a directory")
        if tz is None or isinstance(tz, str):
            self.tz, self.tz_name = load_timezone(tz)
        else:
            self.tz, self.tz_name = tz, str(tz)
        self.problems = problems or Problems()
        self._users: list[LegacyUser] | None = None
        self._uploads: dict[str, list] | None = None
        self._scanned = False
        self.last_keys: list[str] = []
        self.damaged: dict[str, Salvaged] = {}  # relative path -> what its salvage yielded

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def _load_object(self, path: Path) -> dict | None:
        rel = self.rel(path)
        if not path.exists():
            return None
        text = read_text(path, self.problems, rel)
        if text is None:
            return None
        if not text.strip():
            self.problems.add(rel, "empty file", "warning")
            return {}
        got = salvage(text)
        if got.error:
            self.damaged[rel] = got
            self.problems.add(
                rel,
                f"corrupt or truncated JSON ({got.error}): {damage_summary(rel, got)}",
                key=None,
                extra={
                    "recovered": len(got.entries),
                    "lost": got.lost_count,
                    "lost_keys": got.lost[:100],
                },
            )
        return got.entries

    def lost_keys(self, path: Path) -> set[str] | None:
        """Keys the damage to this file (already read) visibly lost; None: the file is intact."""
        got = self.damaged.get(self.rel(path))
        return None if got is None else set(got.lost)

    def damaged_files(self) -> list[dict]:
        """Every damaged file read so far, with what was recovered and what was lost."""
        return [
            {
                "file": rel,
                "recovered": len(g.entries),
                "lost": g.lost_count,
                "lost_keys": g.lost[:100],
                "lost_unnamed": g.lost_unnamed,
            }
            for rel, g in sorted(self.damaged.items())
        ]

    # ------------------------------------------------------------ users
    def users(self) -> list[LegacyUser]:
        """Valid users in users.json order. Invalid entries are reported once."""
        if self._users is not None:
            return self._users
        raw = self._load_object(self.root / "users.json")
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
                key=lambda i: (users[i].created_at is None, users[i].created_at or _EPOCH, i)
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
        if not 1 <= len(username) <= 128 or _CONTROL.search(username):
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
        if not isinstance(pw, str) or not _HEX64.match(pw.strip().lower()):
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
        raw = self._load_object(self.root / "sessions.json") or {}
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
        if not hasattr(self, "session_count"):
            self._sessions_last_seen()
        return self.session_count

    # ------------------------------------------------------------ conversations
    def conversations_file(self, user: LegacyUser) -> Path:
        return self.root / f"conversations_{user.legacy_id}" / "conversations.json"

    def conversation_keys(self, user: LegacyUser) -> list[str]:
        raw = self._load_object(self.conversations_file(user))
        return list(raw or {})

    def conversations(self, user: LegacyUser) -> Iterator[LegacyConversation]:
        """The user's conversations, normalised; unusable ones are reported and skipped."""
        path = self.conversations_file(user)
        raw = self._load_object(path)
        self.last_keys = list(raw or {})  # every key of the file just read, usable or not
        if not raw:
            return
        rel = self.rel(path)
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
                t = prev + _ONE_US  # keep the legacy order: the services order by time, then id
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

    # ------------------------------------------------------------ documents
    def rag_folders(self, user: LegacyUser) -> Iterator[tuple[str, Path]]:
        """(conversation key, folder) for each conversation_<id> folder of the user."""
        base = self.root / f"rag_{user.legacy_id}"
        if not base.is_dir():
            return
        for entry in sorted(base.iterdir(), key=lambda e: e.name):
            if entry.is_dir() and entry.name.startswith("conversation_"):
                yield entry.name[len("conversation_") :], entry

    def document_metadata(self, folder: Path) -> dict[str, dict]:
        path = folder / "documents_metadata.json"
        raw = self._load_object(path)
        if raw is None:
            return {}
        rel = self.rel(path)
        out = {}
        for doc_hash, entry in raw.items():
            if not isinstance(entry, dict):
                self.problems.add(
                    rel,
                    f"document {doc_hash}: not an object; rebuilt from the chunks if they exist",
                    "warning",
                    key=doc_hash,
                )
                continue
            out[doc_hash] = entry
        return out

    @contextmanager
    def open_store(self, folder: Path, conv_key: str):
        """The conversation's legacy Chroma collection (on a temporary copy), or None."""
        store = folder / "chroma_db"
        rel = self.rel(store)
        if not store.is_dir() or not any(store.iterdir()):
            yield None
            return
        tmp = Path(tempfile.mkdtemp(prefix="pharmgpt-legacy-"))
        client = None
        try:
            try:
                shutil.copytree(store, tmp / "db")
                import chromadb
                from chromadb.config import Settings as ChromaSettings

                client = chromadb.PersistentClient(
                    path=str(tmp / "db"),
                    settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
                )
                names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
                name = f"conv_{conv_key}"
                if name not in names:
                    if len(names) != 1:
                        self.problems.add(
                            rel,
                            f"no collection {name} (found: {', '.join(names) or 'none'}); "
                            "its documents are not migrated",
                        )
                        yield None
                        return
                    self.problems.add(
                        rel, f"collection {names[0]} read instead of {name}", "warning"
                    )
                    name = names[0]
                col = client.get_collection(name, embedding_function=None)
            except Exception as e:  # any damage: sqlite errors, Rust panics surfaced as exceptions
                self.problems.add(
                    rel,
                    f"unreadable Chroma store ({type(e).__name__}: {e}); "
                    "its documents are not migrated",
                )
                yield None
                return
            yield col
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass
            shutil.rmtree(tmp, ignore_errors=True)

    def documents(
        self, user: LegacyUser, conv_key: str, folder: Path, page: int = 1000
    ) -> Iterator[LegacyDocument]:
        """Each document of a conversation folder with all of its chunks (one at a time)."""
        meta = self.document_metadata(folder)
        rel_meta = self.rel(folder / "documents_metadata.json")
        with self.open_store(folder, conv_key) as col:
            groups: dict[str, list[tuple[int, str]]] = {}
            chunk_meta: dict[str, dict] = {}
            if col is not None:
                try:
                    total = col.count()
                    for offset in range(0, total, page):
                        res = col.get(include=["metadatas"], limit=page, offset=offset)
                        for cid, m in zip(
                            res["ids"], res["metadatas"] or [{}] * len(res["ids"]), strict=True
                        ):
                            m = m or {}
                            h, idx = _chunk_key(cid, m)
                            groups.setdefault(h, []).append((idx, cid))
                            chunk_meta.setdefault(h, m)
                except Exception as e:
                    self.problems.add(
                        self.rel(folder / "chroma_db"),
                        f"unreadable Chroma store "
                        f"({type(e).__name__}: {e}); its documents are not migrated",
                    )
                    col, groups = None, {}
            for doc_hash in list(meta) + [h for h in groups if h not in meta]:
                entry = meta.get(doc_hash)
                if entry is None:
                    cm = chunk_meta[doc_hash]
                    self.problems.add(
                        rel_meta,
                        f"document {doc_hash}: chunks in the store but not in "
                        "documents_metadata.json; rebuilt from the chunk metadata",
                        "warning",
                        key=doc_hash,
                    )
                    entry = {"filename": cm.get("filename"), "file_type": cm.get("file_type")}
                doc = self._document(doc_hash, entry, rel_meta, from_metadata=doc_hash in meta)
                if doc is None:
                    continue
                members = sorted(groups.get(doc_hash, []))
                if not members:
                    why = "no readable store" if col is None else "no chunks in the store"
                    self.problems.add(
                        rel_meta,
                        f"document {doc_hash} ({doc.filename}): {why}; not migrated",
                        key=doc_hash,
                    )
                    continue
                try:
                    doc.chunks = self._chunks(col, members)
                except Exception as e:
                    self.problems.add(
                        self.rel(folder / "chroma_db"),
                        f"document {doc_hash}: chunks unreadable "
                        f"({type(e).__name__}: {e}); not migrated",
                        key=doc_hash,
                    )
                    continue
                if doc.declared_chunks is not None and doc.declared_chunks != len(doc.chunks):
                    self.problems.add(
                        rel_meta,
                        f"document {doc_hash}: metadata says {doc.declared_chunks} "
                        f"chunks, the store has {len(doc.chunks)}; the store's are migrated",
                        "warning",
                        key=doc_hash,
                    )
                yield doc

    def _document(
        self, doc_hash: str, entry: dict, rel: str, from_metadata: bool
    ) -> LegacyDocument | None:
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            self.problems.add(
                rel,
                f"document {doc_hash}: filename missing; 'document' used",
                "warning",
                key=doc_hash,
            )
            filename = "document"
        filename, _ = clean_text(filename.strip().replace("\x00", ""))
        filename = "".join(ch for ch in filename if ch.isprintable())[-255:] or "document"
        file_type = entry.get("file_type")
        if not isinstance(file_type, str) or not file_type.strip():
            file_type = "application/octet-stream"
        declared = entry.get("chunk_count")
        declared = (
            declared if isinstance(declared, int) and not isinstance(declared, bool) else None
        )
        if len(doc_hash) > 64 or not doc_hash:
            self.problems.add(
                rel,
                f"document key {doc_hash[:80]!r} is not a legacy hash; not migrated",
                key=doc_hash[:80],
            )
            return None
        return LegacyDocument(
            doc_hash,
            filename,
            file_type.strip()[:100],
            parse_time(entry.get("added_at"), self.tz),
            declared,
            from_metadata=from_metadata,
        )

    @staticmethod
    def _chunks(col, members: list[tuple[int, str]], page: int = 500) -> list[LegacyChunk]:
        out: list[LegacyChunk] = []
        for i in range(0, len(members), page):
            part = members[i : i + page]
            res = col.get(ids=[cid for _, cid in part], include=["documents", "embeddings"])
            by_id = {}
            embs = res.get("embeddings")
            for j, cid in enumerate(res["ids"]):
                e = None if embs is None else embs[j]
                by_id[cid] = (res["documents"][j], e)
            for idx, cid in part:
                if cid not in by_id:
                    continue
                text, emb = by_id[cid]
                out.append(LegacyChunk(idx, cid, clean_text(text or "")[0], usable_vector(emb)))
        for n, c in enumerate(
            out
        ):  # new ids are <document>:<n>, so indexes must be 0..n-1 and unique
            c.index = n
        return out

    # ------------------------------------------------------------ uploads
    def uploads(self, user: LegacyUser) -> list[LegacyUpload]:
        if self._uploads is None:
            raw = self._load_object(self.root / "uploads.json") or {}
            known = {u.legacy_id for u in self.users()}
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

    # ------------------------------------------------------------ the rest of the tree
    def scan(self) -> dict[str, int]:
        """Report what the migration will not read: unknown users' files, backups, strays."""
        if self._scanned:
            return self._scan_counts
        known = {u.legacy_id for u in self.users()}
        counts = {
            "backup_files": 0,
            "unknown_user_folders": 0,
            "orphan_rag_folders": 0,
            "empty_folders": 0,
            "unexpected_entries": 0,
        }
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            name = entry.name
            if entry.is_file() and name in ("users.json", "sessions.json", "uploads.json"):
                continue
            if _BACKUP.search(name):
                counts["backup_files"] += 1
                self.problems.add(name, "backup copy left by the old app; not migrated", "info")
                continue
            m = _MD5_DIR.match(name)
            if not (m and entry.is_dir()):
                counts["unexpected_entries"] += 1
                self.problems.add(name, "unexpected entry; ignored", "info")
                continue
            kind, legacy_id = m.groups()
            if legacy_id not in known:
                counts["unknown_user_folders"] += 1
                n = sum(1 for _ in Path(entry.path).rglob("*") if _.is_file())
                if n:
                    self.problems.add(name, self._unknown_user_note(legacy_id, n), key=legacy_id)
                continue
            self._scan_user_folder(Path(entry.path), kind, legacy_id, counts)
        self._scanned = True
        self._scan_counts = counts
        return counts

    def _scan_user_folder(self, folder: Path, kind: str, legacy_id: str, counts: dict) -> None:
        children = sorted(folder.iterdir(), key=lambda e: e.name)
        if not children:
            counts["empty_folders"] += 1
            return
        if kind == "conversations":
            for child in children:
                if child.name == "conversations.json":
                    continue
                if _BACKUP.search(child.name):
                    counts["backup_files"] += 1
                    self.problems.add(self.rel(child), self._backup_note(child), "info")
                else:
                    counts["unexpected_entries"] += 1
                    self.problems.add(self.rel(child), "unexpected entry; ignored", "info")
            return
        user = next(u for u in self.users() if u.legacy_id == legacy_id)
        live = set(self.conversation_keys(user))
        for child in children:
            if child.is_dir() and child.name.startswith("conversation_"):
                key = child.name[len("conversation_") :]
                if key not in live:
                    counts["orphan_rag_folders"] += 1
                    if any(child.iterdir()):
                        self.problems.add(self.rel(child), self._orphan_note(user, key), key=key)
                elif not any(child.iterdir()):
                    counts["empty_folders"] += 1
            elif _BACKUP.search(child.name):
                counts["backup_files"] += 1
                self.problems.add(
                    self.rel(child), "backup copy left by the old app; not migrated", "info"
                )
            else:
                counts["unexpected_entries"] += 1
                self.problems.add(self.rel(child), "unexpected entry; ignored", "info")

    def _unknown_user_note(self, legacy_id: str, n: int) -> str:
        lost = self.lost_keys(self.root / "users.json")
        name = next((k for k in lost or () if ids.legacy_user_id(k) == legacy_id), None)
        if name is not None:
            return (
                f"files of user {name!r} ({n} file(s)), whose entry was lost from the damaged "
                "users.json; not migrated"
            )
        if lost is not None:
            return (
                f"files for a user not in users.json ({n} file(s)); users.json is damaged, so "
                "this may be a user lost there; not migrated"
            )
        return f"files for an unknown user ({n} file(s)); not migrated"

    def _orphan_note(self, user: LegacyUser, key: str) -> str:
        lost = self.lost_keys(self.conversations_file(user))
        if lost is not None and key in lost:
            return (
                f"RAG folder of conversation {key}, which was lost from the damaged "
                "conversations.json; its documents are not migrated"
            )
        if lost is not None:
            return (
                "RAG folder of a conversation that does not exist in conversations.json, which "
                "is damaged: it may be one of the conversations lost there; its documents are "
                "not migrated"
            )
        return (
            "RAG folder of a conversation that does not exist (deleted in the old app); its "
            "documents are not migrated"
        )

    def _backup_note(self, path: Path) -> str:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return "backup copy left by the old app; unreadable; not migrated"
        data, error = salvage_object(text)
        state = "corrupt, " if error else ""
        return (
            f"backup copy left by the old app ({state}{len(data)} conversation(s) readable); "
            "not migrated: restore it by hand if it holds history the live file lacks"
        )

    def fingerprint(self) -> str:
        """Changes when any file is added, removed, resized or touched."""
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for f in sorted(filenames):
                p = Path(dirpath) / f
                try:
                    st = p.stat()
                except OSError:
                    continue
                h.update(
                    f"{self.rel(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
        return h.hexdigest()


def _chunk_key(chunk_id: str, meta: dict) -> tuple[str, int]:
    """(document hash, chunk index) of a legacy chunk: metadata first, else `{hash}_chunk_{i}`."""
    h = meta.get("document_hash")
    idx = meta.get("chunk_index")
    m = re.match(r"^(.*)_chunk_(\d+)$", chunk_id)
    if not isinstance(h, str) or not h:
        h = m.group(1) if m else chunk_id
    if not isinstance(idx, int) or isinstance(idx, bool):
        idx = int(m.group(2)) if m else 0
    return h, idx


def usable_vector(value) -> np.ndarray | None:
    if value is None:
        return None
    try:
        v = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if v.ndim != 1 or v.shape[0] != DIMENSION or not np.all(np.isfinite(v)) or not np.any(v):
        return None
    return v
