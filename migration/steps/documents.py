"""Step 3: each conversation's legacy Chroma store + documents_metadata.json -> `documents`
(status ready) and chunks in the user's collection, then the user's BM25 index.

Chunks are written before their document rows, so a ready row always has all of its chunks;
chunks without a row (a run killed in between) are rewritten on resume. Vectors are carried
over, and re-embedded from the stored text where missing or not 384-d. Chunk ids, metadata and
the text re-embedded are the indexer's own (rag.index), so a migrated chunk is one it wrote.
"""

from __future__ import annotations

import asyncio

import numpy as np
from pharmgpt.rag.chunking import Chunk
from pharmgpt.rag.index import chunk_id, chunk_metadata, stored_embedding_text
from pharmgpt.services.models import DocumentStatus

from .. import ids
from ..ledger import RunLedger
from ..legacy import LegacyDocument, LegacyUser, digest, iso
from ..stores import StoreRecycler

CHUNK_FLUSH = 4000  # chunks held in memory before they are written
LEGACY_STRIDE = 800  # a legacy chunk's offset is unknown: the old chunker's step (1,000 - 200)


class DocumentStep:
    def __init__(self, run: RunLedger, store, lexical, embedder):
        """`embedder`: a callable returning the embedder (loaded only if a chunk needs it)."""
        self.run = run
        self.target, self.source, self.counts = run.target, run.source, run.counts
        self.progress, self.batch = run.progress, run.batch
        self.store, self.lexical, self._embedder = store, lexical, embedder
        self.recycler = StoreRecycler(store, lexical)

    @property
    def embedder(self):
        return self._embedder()

    async def migrate(
        self, u: LegacyUser, uid: str, convs: dict[str, str] | None, live: set[str] | None
    ) -> None:
        t, src = self.target, self.source
        L = u.legacy_id
        if convs is None:  # --only documents: the conversations must be in the target already
            keys = src.conversation_keys(u)
            conv_ids = {k: ids.conversation_id(L, k) for k in keys}
            have = await t.existing("conversations", list(conv_ids.values()), "id,user_id")
            convs = {
                k: cid for k, cid in conv_ids.items() if have.get(cid, {}).get("user_id") == uid
            }
            live = set(keys)
        wrote = False
        for conv_key, folder in src.rag_folders(u):
            if conv_key not in live:
                continue  # reported by the scan: a RAG folder of a conversation that does not exist
            meta = src.document_metadata(folder)
            if conv_key not in convs:
                if meta:
                    src.problems.add(
                        src.rel(folder),
                        f"the conversation was not migrated, so its "
                        f"{len(meta)} document(s) are not either",
                        key=conv_key,
                    )
                    self.counts["documents_skipped"] += len(meta)
                continue
            wrote |= await self._conversation_documents(
                u, uid, conv_key, convs[conv_key], folder, meta
            )
        # Whoever wrote the chunks (this process, or one killed between "documents done" and
        # this rebuild): the index must hold exactly the user's chunks in the store.
        if wrote or not await asyncio.to_thread(self.lexical.is_current, uid):
            await asyncio.to_thread(self.lexical.rebuild, uid)
            self.counts["lexical_rebuilds"] += 1
        self.recycler.done(uid)

    async def _conversation_documents(self, u, uid, conv_key, conv_id, folder, meta) -> bool:
        """Read one legacy store, write its documents. Returns whether chunks were written."""
        t, src = self.target, self.source
        prefix = f"{u.legacy_id}/{conv_key}"
        where = src.rel(folder / "chroma_db")
        keys = [f"{prefix}/{h}" for h in meta]
        mine = await self.run.mine("document", keys)
        existing = await t.existing("documents", [ids.document_id(uid, conv_id, h) for h in meta])
        prior = await self.run.prior_done("document", keys)
        pending: list[tuple[LegacyDocument, str]] = []
        held = 0
        wrote = False
        docs = src.documents(u, conv_key, folder)
        try:
            for doc in docs:
                key = f"{prefix}/{doc.doc_hash}"
                doc_id = ids.document_id(uid, conv_id, doc.doc_hash)
                if doc.doc_hash not in meta:  # rebuilt from chunks: look it up on its own
                    mine.update(await self.run.mine("document", [key]))
                    existing.update(await t.existing("documents", [doc_id]))
                    prior.update(await self.run.prior_done("document", [key]))
                m = mine.get(key)
                if m and m["state"] == "done":
                    self._count_doc(doc)
                    continue
                if not (m and m["state"] == "pending"):
                    skip = None
                    if doc_id in existing:
                        skip, self.counts["documents_existing"] = (
                            "exists",
                            self.counts["documents_existing"] + 1,
                        )
                    elif key in prior:
                        skip = "migrated by an earlier run and deleted since; not recreated"
                        src.problems.add(
                            src.rel(folder),
                            f"document {doc.doc_hash}: {skip}",
                            "warning",
                            key=doc.doc_hash,
                        )
                        self.counts["documents_deleted_since"] += 1
                    if skip:
                        await t.put_items(
                            [
                                self.run.item(
                                    "document",
                                    key,
                                    {
                                        "document_id": doc_id,
                                        "user_id": uid,
                                        "conversation_id": conv_id,
                                    },
                                    "skipped",
                                    doc.chunk_digest(),
                                    skip,
                                )
                            ]
                        )
                        self.progress.advance("documents")
                        self.progress.advance("chunks", len(doc.chunks))
                        continue
                pending.append((doc, doc_id))
                held += len(doc.chunks)
                if held >= CHUNK_FLUSH:
                    await self._write_documents(u, uid, conv_id, prefix, pending, where)
                    wrote, pending, held = True, [], 0
        finally:
            docs.close()
        if pending:
            await self._write_documents(u, uid, conv_id, prefix, pending, where)
            wrote = True
        return wrote

    def _count_doc(self, doc: LegacyDocument) -> None:
        self.counts["documents_written"] += 1
        self.counts["chunks_written"] += len(doc.chunks)
        self.progress.advance("documents")
        self.progress.advance("chunks", len(doc.chunks))

    async def _write_documents(
        self, u, uid, conv_id, prefix, docs: list[tuple[LegacyDocument, str]], where: str
    ) -> None:
        """Claim, then chunks into the store, then the rows (status ready): a ready row always has
        all of its chunks; chunks without a row (a run killed in between) are rewritten on
        resume."""
        t = self.target
        items, batch_items, rows = [], [], []
        fallback = self.run.fallback_time()
        for doc, doc_id in docs:
            key = f"{prefix}/{doc.doc_hash}"
            items.append(
                self.run.item(
                    "document",
                    key,
                    {"document_id": doc_id, "user_id": uid, "conversation_id": conv_id},
                    "pending",
                    doc.chunk_digest(),
                )
            )
            for s in range(0, len(doc.chunks), self.batch):
                part = doc.chunks[s : s + self.batch]
                batch_items.append(
                    self.run.item(
                        "chunk_batch",
                        f"{key}#{s // self.batch}",
                        {
                            "document_id": doc_id,
                            "user_id": uid,
                            "chunk_ids": [chunk_id(doc_id, c.index) for c in part],
                        },
                        "pending",
                        digest([[c.index, c.text] for c in part]),
                    )
                )
            rows.append(
                {
                    "id": doc_id,
                    "user_id": uid,
                    "conversation_id": conv_id,
                    "sha256": None,
                    "filename": doc.filename,
                    "file_type": doc.file_type,
                    "file_size": None,
                    "chunk_count": len(doc.chunks),
                    "status": DocumentStatus.READY,
                    "legacy_hash": doc.doc_hash,
                    "added_at": iso(doc.added_at or fallback),
                    "metadata": {
                        "migrated": True,
                        "legacy_file_type": doc.file_type,
                        "legacy_chunk_count": doc.declared_chunks,
                        "rebuilt_from_chunks": not doc.from_metadata,
                    },
                }
            )
        await t.put_items(items + batch_items)
        await asyncio.to_thread(self._write_chunks, uid, docs, rows, where)
        failed = await self.run.insert_rows("documents", rows, items)
        if failed:  # their chunks must not stay behind
            gone = [d for (doc, d), i in zip(docs, items, strict=True) if i["legacy_key"] in failed]
            await asyncio.to_thread(self.store.delete_documents, uid, gone)
        ok_ids = {
            d for (doc, d), i in zip(docs, items, strict=True) if i["legacy_key"] not in failed
        }
        await t.put_items(
            [
                dict(i, state="done")
                for i in items + batch_items
                if i["target_ids"]["document_id"] in ok_ids
            ]
        )
        for doc, doc_id in docs:
            if doc_id in ok_ids:
                self._count_doc(doc)
            else:
                self.progress.advance("documents")
                self.progress.advance("chunks", len(doc.chunks))

    def _write_chunks(
        self, uid: str, docs: list[tuple[LegacyDocument, str]], rows: list[dict], where: str
    ) -> None:
        """The documents' chunks into the store; `rows` (the documents' rows, in the same order)
        give the indexer what it puts in each chunk's metadata."""
        ids_, texts, metas, vecs, redo = [], [], [], [], []
        for (doc, doc_id), row in zip(docs, rows, strict=True):
            missing = 0
            for c in doc.chunks:
                chunk = Chunk(c.index, c.text, None, None, None, c.index * LEGACY_STRIDE)
                ids_.append(chunk_id(doc_id, c.index))
                texts.append(c.text)
                metas.append({**chunk_metadata(chunk, row), "legacy_id": c.legacy_id})
                if c.embedding is None:
                    redo.append(len(vecs))
                    missing += 1
                vecs.append(c.embedding)
            if missing:
                self.source.problems.add(
                    where,
                    f"document {doc.doc_hash} ({doc.filename}): {missing} chunk vector(s) "
                    "missing or not 384-dimensional; re-embedded from the text",
                    "warning",
                    key=doc.doc_hash,
                )
        if not ids_:
            return
        if redo:
            fresh = self.embedder.embed([stored_embedding_text(texts[i], metas[i]) for i in redo])
            for j, i in enumerate(redo):
                vecs[i] = fresh[j]
            self.counts["chunks_reembedded"] += len(redo)
        self.store.upsert(
            uid, ids_, np.vstack(vecs).astype(np.float32), texts, metas, batch=self.batch
        )
