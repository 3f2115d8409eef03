"""The rest of the tree: what the migration will not read (unknown users' files, backups,
orphan RAG folders, strays), each reported with what it probably is."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import ids
from .conversations import ConversationReader
from .records import LegacyUser
from .salvage import salvage_object
from .tree import KindReader, LegacyTree
from .users import UserReader

MD5_DIR = re.compile(r"^(conversations|rag)_([0-9a-f]{32})$")
BACKUP = re.compile(r"\.backup_\d*")


class TreeScan(KindReader):
    def __init__(self, tree: LegacyTree, users: UserReader, conversations: ConversationReader):
        super().__init__(tree)
        self.user_reader = users
        self.conversation_reader = conversations
        self._counts: dict[str, int] | None = None

    def scan(self) -> dict[str, int]:
        """Report what the migration will not read: unknown users' files, backups, strays."""
        if self._counts is not None:
            return self._counts
        known = {u.legacy_id for u in self.user_reader.users()}
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
            if BACKUP.search(name):
                counts["backup_files"] += 1
                self.problems.add(name, "backup copy left by the old app; not migrated", "info")
                continue
            m = MD5_DIR.match(name)
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
        self._counts = counts
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
                if BACKUP.search(child.name):
                    counts["backup_files"] += 1
                    self.problems.add(self.tree.rel(child), self._backup_note(child), "info")
                else:
                    counts["unexpected_entries"] += 1
                    self.problems.add(self.tree.rel(child), "unexpected entry; ignored", "info")
            return
        user = next(u for u in self.user_reader.users() if u.legacy_id == legacy_id)
        live = set(self.conversation_reader.conversation_keys(user))
        for child in children:
            if child.is_dir() and child.name.startswith("conversation_"):
                key = child.name[len("conversation_") :]
                if key not in live:
                    counts["orphan_rag_folders"] += 1
                    if any(child.iterdir()):
                        self.problems.add(
                            self.tree.rel(child), self._orphan_note(user, key), key=key
                        )
                elif not any(child.iterdir()):
                    counts["empty_folders"] += 1
            elif BACKUP.search(child.name):
                counts["backup_files"] += 1
                self.problems.add(
                    self.tree.rel(child), "backup copy left by the old app; not migrated", "info"
                )
            else:
                counts["unexpected_entries"] += 1
                self.problems.add(self.tree.rel(child), "unexpected entry; ignored", "info")

    def _unknown_user_note(self, legacy_id: str, n: int) -> str:
        lost = self.tree.lost_keys(self.root / "users.json")
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
        lost = self.tree.lost_keys(self.conversation_reader.conversations_file(user))
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
