"""The normalised legacy records, and the checksums the migrator and the verifier share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from .. import ids
from .times import iso


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
