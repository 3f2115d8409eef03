"""Streaming reader of the legacy file-based PharmGPT tree (../shared/legacy-format.md).

Nothing is loaded whole: users.json is the index, then one user's conversations file, then one
conversation's RAG folder at a time. Every record comes out normalised (UTC times, clean text,
message order made strict) by the same code for the migrator and the verifier, so their
checksums agree. Anything odd is recorded in `Problems` with the file and the reason; the rest
keeps flowing.

One module per record kind (users, conversations, documents, uploads, and the scan of what is
left), over shared parts: the tree and its damaged files (tree), damage reporting (problems),
salvage of cut JSON (salvage), time zones (times), text cleaning (text) and the records with
their checksums (records). `LegacySource` (source) puts them behind one object.
"""

from .documents import DIMENSION, usable_vector
from .problems import Problem, Problems
from .records import (
    LegacyChunk,
    LegacyConversation,
    LegacyDocument,
    LegacyMessage,
    LegacyUpload,
    LegacyUser,
    digest,
    messages_digest,
)
from .salvage import Salvaged, damage_summary, salvage, salvage_object
from .source import LegacySource
from .text import clean_text, normalize_username, read_text
from .times import iso, load_timezone, local_timezone_name, parse_time

__all__ = [
    "DIMENSION",
    "LegacyChunk",
    "LegacyConversation",
    "LegacyDocument",
    "LegacyMessage",
    "LegacySource",
    "LegacyUpload",
    "LegacyUser",
    "Problem",
    "Problems",
    "Salvaged",
    "clean_text",
    "damage_summary",
    "digest",
    "iso",
    "load_timezone",
    "local_timezone_name",
    "messages_digest",
    "normalize_username",
    "parse_time",
    "read_text",
    "salvage",
    "salvage_object",
    "usable_vector",
]
