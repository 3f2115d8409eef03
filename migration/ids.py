"""Deterministic ids: a re-run or a resumed run computes the same ids, so it
upserts the rows it (or an earlier run) wrote instead of duplicating them.

The namespaces are fixed constants: changing one would make the next run
treat every migrated row as new. Never change them.
"""

from __future__ import annotations

import hashlib
import re
import uuid

# uuid5(NAMESPACE_URL, "https://pharmgpt/migration/<kind>"), frozen here
NS_USER = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a01")
NS_CONVERSATION = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a02")
NS_MESSAGE = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a03")
NS_DOCUMENT = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a04")
NS_UPLOAD = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a05")
NS_ITEM = uuid.UUID("6f0e1b8e-2a49-5c1e-9a0e-6b1f4c2d7a06")

_MD5 = re.compile(r"^[0-9a-f]{32}$")


def legacy_user_id(username: str) -> str:
    """The old app's user id: md5 of the username's UTF-8 bytes."""
    return hashlib.md5(username.encode("utf-8")).hexdigest()


def is_legacy_user_id(value: str) -> bool:
    return bool(_MD5.match(value or ""))


def user_id(legacy_id: str) -> str:
    """The new users.id of a legacy user (UUIDv5 of the md5 id)."""
    return str(uuid.uuid5(NS_USER, legacy_id))


def conversation_id(legacy_user: str, legacy_key: str) -> str:
    """Legacy conversation ids are uuid4 strings and are kept; any other key
    (a hand edit) gets a UUIDv5 of the owner and the key."""
    try:
        return str(uuid.UUID(legacy_key))
    except (ValueError, AttributeError, TypeError):
        return str(uuid.uuid5(NS_CONVERSATION, f"{legacy_user}/{legacy_key}"))


def message_id(conversation: str, index: int) -> str:
    """The index-th message (0-based, in the legacy list) of a conversation."""
    return str(uuid.uuid5(NS_MESSAGE, f"{conversation}:{index}"))


def document_id(user: str, conversation: str, doc_hash: str) -> str:
    return str(uuid.uuid5(NS_DOCUMENT, f"{user}:{conversation}:{doc_hash}"))


def upload_id(legacy_user: str, index: int) -> str:
    return str(uuid.uuid5(NS_UPLOAD, f"{legacy_user}#{index}"))


def item_id(run_id: str, kind: str, legacy_key: str) -> str:
    return str(uuid.uuid5(NS_ITEM, f"{run_id}|{kind}|{legacy_key}"))
