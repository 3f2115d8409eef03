"""The legacy tree as files: its root, the time zone its naive times are read in, the problems
found so far, and each top-level JSON object read once with what its damage lost."""

from __future__ import annotations

import hashlib
import os
from datetime import tzinfo
from pathlib import Path

from .problems import Problems
from .salvage import Salvaged, damage_summary, salvage
from .text import read_text
from .times import load_timezone


class LegacyTree:
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
        self.damaged: dict[str, Salvaged] = {}  # relative path -> what its salvage yielded

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def load_object(self, path: Path) -> dict | None:
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


class KindReader:
    """One kind of record, read from the shared tree (its problems, zone and damaged files)."""

    def __init__(self, tree: LegacyTree):
        self.tree = tree
        self.problems = tree.problems
        self.tz = tree.tz
        self.root = tree.root
