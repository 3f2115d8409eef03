"""What a damaged or truncated top-level JSON object still yields, and what it lost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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
        keys, unnamed = top_level_keys(text, i)
        return Salvaged(out, error, [k for k in keys if k not in out], unnamed)

    i = skip_ws(text, 0)
    if not text.startswith("{", i):
        return Salvaged(out, error)
    i += 1
    while True:
        i = skip_ws(text, i)
        start = i
        if i >= len(text) or text[i] != '"':
            return lost_from(start)
        try:
            key, i = dec.raw_decode(text, i)
            i = skip_ws(text, i)
            if not text.startswith(":", i):
                return lost_from(start)
            value, i = dec.raw_decode(text, skip_ws(text, i + 1))
        except json.JSONDecodeError:
            return lost_from(start)
        out[key] = value
        i = skip_ws(text, i)
        if text.startswith(",", i):
            i += 1
            continue
        return lost_from(i)


def top_level_keys(text: str, i: int) -> tuple[list[str], int]:
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
                k = skip_ws(text, j + 1)
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


def skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


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
