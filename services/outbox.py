"""A durable local queue for messages the data store could not take (SQLite).

Items leave in insertion order and only after the store confirmed them; the
message id makes a repeat delivery harmless, so "at least once" here is
"exactly once" in the database. Items that can never succeed (their
conversation is gone) are kept with the reason, out of the queue.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from pharmgpt.localbase.files import FILE_MODE, private_dir, private_file


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    user_id: str
    conversation_id: str
    message_id: str
    payload: dict


class Outbox:
    def __init__(self, path: Path):
        private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))  # 0600 before SQLite opens it:
        private_file(path)  # its -wal and -shm files take the database file's mode
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
            conversation_id TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            error TEXT, created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))""")

    def put(self, user_id: str, conversation_id: str, message_id: str, payload: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox (user_id, conversation_id, message_id, payload) "
                "VALUES (?, ?, ?, ?)",
                (user_id, conversation_id, message_id, json.dumps(payload)),
            )

    def pending(self, user_id: str | None = None) -> list[OutboxItem]:
        sql = (
            "SELECT seq, user_id, conversation_id, message_id, payload FROM outbox "
            "WHERE state = 'pending'"
        )
        args: tuple = ()
        if user_id is not None:
            sql += " AND user_id = ?"
            args = (user_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def has_pending(self, user_id: str, conversation_id: str | None = None) -> bool:
        sql = "SELECT 1 FROM outbox WHERE state = 'pending' AND user_id = ?"
        args: tuple = (user_id,)
        if conversation_id is not None:
            sql += " AND conversation_id = ?"
            args += (conversation_id,)
        with self._lock:
            return self._db.execute(sql + " LIMIT 1", args).fetchone() is not None

    def done(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def fail(self, seq: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'failed', error = ? WHERE seq = ?", (error[:500], seq)
            )

    def failed(self) -> list[tuple[OutboxItem, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, user_id, conversation_id, message_id, payload, error FROM outbox "
                "WHERE state = 'failed' ORDER BY seq"
            ).fetchall()
        return [(OutboxItem(r[0], r[1], r[2], r[3], json.loads(r[4])), r[5]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
