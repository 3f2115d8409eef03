"""`LegacySource`: the one object the migrator, planner and verifier read a tree through.

A thin façade: it builds the shared tree and one reader per record kind, and hands each call to
the reader that owns it, so every caller sees the same normalised records and the same problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path

from .conversations import ConversationReader
from .documents import DocumentReader
from .problems import Problems
from .records import LegacyConversation, LegacyDocument, LegacyUpload, LegacyUser
from .salvage import Salvaged
from .scan import TreeScan
from .tree import LegacyTree
from .uploads import UploadReader
from .users import UserReader


class LegacySource:
    def __init__(
        self, root: Path | str, tz: tzinfo | str | None = None, problems: Problems | None = None
    ):
        self.tree = LegacyTree(root, tz, problems)
        self.user_reader = UserReader(self.tree)
        self.conversation_reader = ConversationReader(self.tree)
        self.document_reader = DocumentReader(self.tree)
        self.upload_reader = UploadReader(self.tree, self.user_reader)
        self.tree_scan = TreeScan(self.tree, self.user_reader, self.conversation_reader)

    # ------------------------------------------------------------ the tree
    @property
    def root(self) -> Path:
        return self.tree.root

    @property
    def tz(self) -> tzinfo:
        return self.tree.tz

    @property
    def tz_name(self) -> str:
        return self.tree.tz_name

    @property
    def problems(self) -> Problems:
        return self.tree.problems

    @property
    def damaged(self) -> dict[str, Salvaged]:
        return self.tree.damaged

    def rel(self, path: Path) -> str:
        return self.tree.rel(path)

    def lost_keys(self, path: Path) -> set[str] | None:
        return self.tree.lost_keys(path)

    def damaged_files(self) -> list[dict]:
        return self.tree.damaged_files()

    def fingerprint(self) -> str:
        return self.tree.fingerprint()

    def scan(self) -> dict[str, int]:
        return self.tree_scan.scan()

    # ------------------------------------------------------------ users
    def users(self) -> list[LegacyUser]:
        return self.user_reader.users()

    def renames(self) -> list[dict]:
        return self.user_reader.renames()

    def sessions(self) -> int:
        return self.user_reader.sessions()

    # ------------------------------------------------------------ conversations
    @property
    def last_keys(self) -> list[str]:
        """Every key of the conversations file read last (by `conversations`), usable or not."""
        return self.conversation_reader.last_keys

    def conversations_file(self, user: LegacyUser) -> Path:
        return self.conversation_reader.conversations_file(user)

    def conversation_keys(self, user: LegacyUser) -> list[str]:
        return self.conversation_reader.conversation_keys(user)

    def conversations(self, user: LegacyUser) -> Iterator[LegacyConversation]:
        return self.conversation_reader.conversations(user)

    # ------------------------------------------------------------ documents
    def rag_folders(self, user: LegacyUser) -> Iterator[tuple[str, Path]]:
        return self.document_reader.rag_folders(user)

    def document_metadata(self, folder: Path) -> dict[str, dict]:
        return self.document_reader.document_metadata(folder)

    def open_store(self, folder: Path, conv_key: str):
        return self.document_reader.open_store(folder, conv_key)

    def documents(
        self, user: LegacyUser, conv_key: str, folder: Path, page: int = 1000
    ) -> Iterator[LegacyDocument]:
        return self.document_reader.documents(user, conv_key, folder, page)

    # ------------------------------------------------------------ uploads
    def uploads(self, user: LegacyUser) -> list[LegacyUpload]:
        return self.upload_reader.uploads(user)
