"""rag_<id>/conversation_<key>/: documents_metadata.json and the legacy Chroma store, each
document with all of its chunks (text, and the vector when it is usable).

Legacy Chroma stores are opened on a temporary copy: opening a store in place rewrites its
files, and the migration must never change its source.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pharmgpt.rag.embeddings import DIMENSION  # vectors of another size are re-embedded

from .records import LegacyChunk, LegacyDocument, LegacyUser
from .text import clean_text
from .times import parse_time
from .tree import KindReader


class DocumentReader(KindReader):
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
        raw = self.tree.load_object(path)
        if raw is None:
            return {}
        rel = self.tree.rel(path)
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
        rel = self.tree.rel(store)
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
        rel_meta = self.tree.rel(folder / "documents_metadata.json")
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
                            h, idx = chunk_key(cid, m)
                            groups.setdefault(h, []).append((idx, cid))
                            chunk_meta.setdefault(h, m)
                except Exception as e:
                    self.problems.add(
                        self.tree.rel(folder / "chroma_db"),
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
                        self.tree.rel(folder / "chroma_db"),
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


def chunk_key(chunk_id: str, meta: dict) -> tuple[str, int]:
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
