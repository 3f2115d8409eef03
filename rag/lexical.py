"""BM25 over each owner scope's chunks (a user's library, a pharmacy's: rag/owner_scope.py),
so exact drug names and doses are found.

Incremental (issue 14): one small segment per document holds that document's
term frequencies and chunk lengths; the corpus statistics BM25 needs (number
of chunks, average length, each term's document frequency) are kept as running
totals and applied at query time. Adding or deleting a document therefore costs
time proportional to that document, not to the user's corpus, and the scores
equal a full bm25s rebuild's (Lucene variant, k1 1.5, b 0.75, the same
tokenizer). bm25s itself has no update path: its index stores scores that
already fold in the corpus-wide IDF and average length, so any change
re-scores everything (measured in bench/lexical.py).

On disk, under `<root>/<user hex>/` (a pharmacy's under `<root>/p_<hex>/`):
`seg/*.seg` (one per document, a fresh name per write) and `manifest.json`
naming each document's segment with its
SHA-256, plus a checksum over the manifest itself. A segment is written before
the manifest that names it and the manifest is replaced atomically, so a crash
leaves either the old or the new state plus an orphan file that the next write
removes. Writers serialise on a lock file (the app and `pharmgpt worker` may be
separate processes); readers notice a newer manifest by its stat and load only
the segments that changed. The vector store stays the source of truth: the
first load in a process compares the chunk count with Chroma and, when it
differs, the chunk ids, re-reading from Chroma only the documents that disagree
(a damaged manifest or segment means a rebuild from Chroma).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import threading
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pharmgpt.localbase.files import open_private, private_dir

from .owner_scope import OwnerScope
from .store import ChunkStore, Owner

K1 = 1.5  # bm25s defaults (method "lucene")
B = 0.75
MANIFEST = "manifest.json"
FORMAT = 1
_LEGACY = (
    "pharmgpt_ids.json",
    "params.index.json",
    "vocab.index.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "nonoccurrence_array.index.npy",
)


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], stemmer=None) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(
        texts,
        stopwords="en_plus",
        stemmer=stemmer or _stemmer(),
        show_progress=False,
        return_ids=False,
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Segment:
    """One document's chunks: ids, lengths in tokens, and per term the rows holding it with
    counts, as flat arrays (term i's postings are rows/tfs[indptr[i]:indptr[i + 1]])."""

    document_id: str
    ids: list[str]
    lengths: np.ndarray  # float64, one per chunk
    terms: dict[str, int]  # term -> its index into indptr
    indptr: np.ndarray
    rows: np.ndarray
    tfs: np.ndarray  # float64

    @classmethod
    def build(cls, document_id: str, ids: list[str], tokens: list[list[str]]) -> Segment:
        rows: dict[str, list[int]] = {}
        tfs: dict[str, list[int]] = {}
        for row, toks in enumerate(tokens):
            for term, tf in Counter(toks).items():
                rows.setdefault(term, []).append(row)
                tfs.setdefault(term, []).append(tf)
        terms = list(rows)
        indptr = np.zeros(len(terms) + 1, dtype=np.int32)
        indptr[1:] = np.cumsum([len(rows[t]) for t in terms]) if terms else []
        flat_rows = [r for t in terms for r in rows[t]]
        flat_tfs = [f for t in terms for f in tfs[t]]
        return cls(
            str(document_id),
            list(ids),
            np.asarray([len(t) for t in tokens], dtype=np.float64),
            {t: i for i, t in enumerate(terms)},
            indptr,
            np.asarray(flat_rows, dtype=np.int32),
            np.asarray(flat_tfs, dtype=np.float64),
        )

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.terms[term]
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.rows[a:b], self.tfs[a:b]

    def df(self) -> np.ndarray:
        """Per term (in `terms` order): how many of this segment's chunks hold it."""
        return np.diff(self.indptr)

    def to_bytes(self) -> bytes:
        """A JSON header (ids, terms) then the int32 arrays: lengths, indptr, rows, tfs."""
        header = json.dumps(
            {
                "format": FORMAT,
                "document_id": self.document_id,
                "ids": self.ids,
                "terms": list(self.terms),
            },
            separators=(",", ":"),
        ).encode()
        arrays = [
            self.lengths.astype("<i4"),
            self.indptr.astype("<i4"),
            self.rows.astype("<i4"),
            self.tfs.astype("<i4"),
        ]
        return b"".join([len(header).to_bytes(4, "little"), header, *(a.tobytes() for a in arrays)])

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        size = int.from_bytes(data[:4], "little")
        d = json.loads(data[4 : 4 + size])
        if d.get("format") != FORMAT:
            raise ValueError("unknown segment format")
        body = np.frombuffer(data, dtype="<i4", offset=4 + size)
        n, t = len(d["ids"]), len(d["terms"])
        lengths, indptr = body[:n], body[n : n + t + 1]
        p = int(indptr[-1]) if t else 0
        if len(body) != n + t + 1 + 2 * p:
            raise ValueError("segment is truncated")
        rows, tfs = body[n + t + 1 : n + t + 1 + p], body[n + t + 1 + p :]
        return cls(
            d["document_id"],
            d["ids"],
            lengths.astype(np.float64),
            {x: i for i, x in enumerate(d["terms"])},
            indptr.astype(np.int32),
            rows.astype(np.int32),
            tfs.astype(np.float64),
        )


@dataclass
class _UserIndex:
    """The segments in memory with the running corpus totals BM25 needs.

    Each segment's chunks sit at a range of global positions (appended on add; a removed
    segment leaves a hole, compacted at query time once holes outnumber live rows). Per term,
    the postings of every segment holding it are merged on first use after a change, so a
    query costs one vectorised pass per query term whatever the number of documents."""

    segments: dict[str, Segment] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # document id -> segment file name
    base: dict[str, int] = field(default_factory=dict)  # document id -> its first global position
    vocab: dict[str, int] = field(default_factory=dict)  # term -> its slot in `df` (never reused)
    df: np.ndarray = field(default_factory=lambda: np.zeros(1024, dtype=np.int64))
    term_slots: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # document id -> its terms' slots
    merged: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    n: int = 0
    total: float = 0.0
    end: int = 0  # next free global position
    signature: tuple | None = None  # the manifest's stat when last read
    _owner: tuple | None = (
        None  # (sorted segment starts, their document ids), rebuilt after a change
    )

    def _changed(self) -> None:
        self.merged.clear()  # rebuilt per query term on next use
        self._owner = None

    def add(self, seg: Segment, file: str) -> None:
        self.remove(seg.document_id)
        doc = seg.document_id
        vocab = self.vocab
        slots = np.fromiter(
            (vocab.setdefault(t, len(vocab)) for t in seg.terms),
            dtype=np.int64,
            count=len(seg.terms),
        )
        if len(vocab) > len(self.df):
            self.df = np.concatenate(
                [self.df, np.zeros(max(len(vocab), len(self.df)), dtype=np.int64)]
            )
        self.df[slots] += seg.df()
        self.term_slots[doc] = slots
        self.segments[doc] = seg
        self.files[doc] = file
        self.base[doc] = self.end
        self.end += len(seg.ids)
        self.n += len(seg.ids)
        self.total += float(seg.lengths.sum())
        self._owner = None
        for term in seg.terms:  # keep the merged postings already built in step
            got = self.merged.get(term)
            if got is not None:
                rows, tf = seg.postings(term)
                self.merged[term] = (
                    np.concatenate([got[0], rows + self.base[doc]]),
                    np.concatenate([got[1], tf]),
                    np.concatenate([got[2], seg.lengths[rows]]),
                )

    def remove(self, document_id: str) -> None:
        seg = self.segments.pop(document_id, None)
        self.files.pop(document_id, None)
        start = self.base.pop(document_id, 0)
        if seg is None:
            return
        self.df[self.term_slots.pop(document_id)] -= seg.df()
        self.n -= len(seg.ids)
        self.total -= float(seg.lengths.sum())
        self._owner = None
        for term in seg.terms:
            got = self.merged.get(term)
            if got is not None:
                keep = (got[0] < start) | (got[0] >= start + len(seg.ids))
                self.merged[term] = (got[0][keep], got[1][keep], got[2][keep])

    def _compact(self) -> None:
        self.end = 0
        for doc, seg in self.segments.items():
            self.base[doc] = self.end
            self.end += len(seg.ids)
        self._changed()

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(global positions, term frequencies, chunk lengths) of every chunk holding `term`."""
        got = self.merged.get(term)
        if got is None:
            pos, tfs, lens = [], [], []
            for doc, seg in self.segments.items():
                if term not in seg.terms:
                    continue
                rows, tf = seg.postings(term)
                pos.append(rows + self.base[doc])
                tfs.append(tf)
                lens.append(seg.lengths[rows])
            got = self.merged[term] = (
                np.concatenate(pos),
                np.concatenate(tfs),
                np.concatenate(lens),
            )
        return got

    def search(
        self, tokens: list[str], k: int, document_ids: set[str] | None
    ) -> list[tuple[str, str, float]]:
        if self.n == 0:
            return []
        if self.end > 2 * self.n + 1024:
            self._compact()
        avgdl = self.total / self.n
        scores = np.zeros(self.end, dtype=np.float64)
        for term in tokens:  # a repeated query term counts again, as in bm25s
            slot = self.vocab.get(term)
            df = int(self.df[slot]) if slot is not None else 0
            if not df:
                continue
            idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
            pos, tf, dl = self._postings(term)
            scores[pos] += idf * tf / (tf + K1 * (1 - B + B * dl / avgdl))
        if document_ids is not None:
            keep = np.zeros(self.end, dtype=bool)
            for doc in document_ids:
                if doc in self.base:
                    keep[self.base[doc] : self.base[doc] + len(self.segments[doc].ids)] = True
            scores[~keep] = 0.0
        live = int(np.count_nonzero(scores > 0))
        if not live:
            return []
        k = min(k, live)
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        top = np.nonzero(scores >= kth)[0]  # ties at the cut included, then broken by chunk id
        if self._owner is None:
            owner = sorted((b, doc) for doc, b in self.base.items())
            self._owner = (np.asarray([b for b, _ in owner]), owner)
        starts, owner = self._owner
        hits = []
        for p in top:
            b, doc = owner[int(np.searchsorted(starts, p, side="right")) - 1]
            hits.append((self.segments[doc].ids[int(p) - b], doc, float(scores[p])))
        hits.sort(key=lambda h: (-h[2], h[0]))
        return hits[:k]

    def ids(self) -> set[str]:
        return {i for seg in self.segments.values() for i in seg.ids}


class LexicalIndex:
    def __init__(self, root: Path, store: ChunkStore):
        self.root = root
        self.store = store
        self._cache: dict[OwnerScope, _UserIndex] = {}
        self._verified: set[OwnerScope] = set()  # scopes compared with the store in this process
        self._lock = threading.Lock()
        self._user_locks: dict[OwnerScope, threading.RLock] = {}
        self._stemmer = None

    @property
    def stemmer(self):
        if self._stemmer is None:
            self._stemmer = _stemmer()
        return self._stemmer

    def _dir(self, user_id: Owner) -> Path:
        return self.root / OwnerScope.of(user_id).directory

    def _ulock(self, user_id: Owner) -> threading.RLock:
        with self._lock:
            return self._user_locks.setdefault(OwnerScope.of(user_id), threading.RLock())

    @contextmanager
    def _flock(self, user_id: Owner, exclusive: bool):
        d = self._dir(user_id)
        private_dir(d / "seg")  # user data: 0700 (issue #12, M8)
        with open_private(d / ".lock") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield d
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- the manifest ---------------------------------------------------------------------------

    def _signature(self, user_id: Owner) -> tuple | None:
        try:
            st = (self._dir(user_id) / MANIFEST).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read_manifest(self, d: Path) -> dict[str, dict] | None:
        """Document id -> {file, sha256, chunks}; None when missing or its checksum disagrees."""
        try:
            raw = json.loads((d / MANIFEST).read_bytes())
            body = raw["segments"]
            if raw.get("format") != FORMAT or raw.get("checksum") != _sha(_canonical(body)):
                return None
            return body
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_manifest(self, d: Path, entries: dict[str, dict]) -> None:
        data = json.dumps(
            {"format": FORMAT, "checksum": _sha(_canonical(entries)), "segments": entries},
            separators=(",", ":"),
        ).encode()
        _atomic_write(d / MANIFEST, data, fsync=True)

    # -- writing ----------------------------------------------------------------------------------

    def _segments_from_store(
        self,
        user_id: Owner,
        document_ids: list[str] | None,
        given: list[tuple[str, str]] | None = None,
    ) -> dict[str, Segment]:
        """Segments for these documents (all of the user's when None) read from the vector store,
        or, for one document, from `given` (chunk id, text) pairs its writer just stored."""
        if given is not None and document_ids is not None and len(document_ids) == 1:
            corpus = [(cid, document_ids[0], text) for cid, text in given]
        elif document_ids is None:
            corpus = self.store.all_chunks(user_id)
        else:
            corpus = []
            for doc in document_ids:
                res = self.store.get(user_id, document_id=doc)
                corpus += [
                    (i, m["document_id"], t)
                    for i, t, m in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
                ]
        by_doc: dict[str, list[tuple[str, str]]] = {}
        for cid, doc, text in corpus:
            by_doc.setdefault(str(doc), []).append((cid, text or ""))
        for rows in by_doc.values():
            rows.sort()
        tokens = (
            tokenize([t for rows in by_doc.values() for _, t in rows], self.stemmer)
            if corpus
            else []
        )
        out, at = {}, 0
        for doc, rows in by_doc.items():
            out[doc] = Segment.build(doc, [r[0] for r in rows], tokens[at : at + len(rows)])
            at += len(rows)
        return out

    def _commit(
        self,
        user_id: Owner,
        build: list[str] | None,
        drop: frozenset[str] | set[str] = frozenset(),
        everything: bool = False,
        given: list[tuple[str, str]] | None = None,
    ) -> int:
        """Re-read `build` (None: every document) from the store, drop `drop`, and publish.

        Under the writers' lock the store is read after any earlier writer published, so the
        last writer always saw the last chunks."""
        with self._ulock(user_id), self._flock(user_id, exclusive=True) as d:
            try:
                return self._publish(user_id, d, build, drop, everything, given)
            except (OSError, ValueError, KeyError, TypeError):
                if everything:
                    raise
                # another document's segment is damaged: start again from the store
                with self._lock:
                    self._cache.pop(OwnerScope.of(user_id), None)
                return self._publish(user_id, d, None, frozenset(), True)

    def _publish(
        self,
        user_id: Owner,
        d: Path,
        build: list[str] | None,
        drop,
        everything: bool,
        given: list[tuple[str, str]] | None = None,
    ) -> int:
        fresh = self._segments_from_store(user_id, build, given)
        entries = {} if everything else (self._read_manifest(d) or {})
        if not everything and not entries and (d / MANIFEST).exists():
            raise ValueError("the manifest is damaged")
        for doc in build or ():
            if str(doc) not in fresh:
                entries.pop(str(doc), None)  # nothing left in the store for it
        for doc in drop:
            entries.pop(str(doc), None)
        written: dict[str, Segment] = {}
        for doc, seg in fresh.items():
            data = seg.to_bytes()
            name = f"{uuid.uuid4().hex}.seg"
            _atomic_write(d / "seg" / name, data, fsync=False)  # the sha256 catches a torn write
            entries[doc] = {"file": name, "sha256": _sha(data), "chunks": len(seg.ids)}
            written[name] = seg
        self._write_manifest(d, entries)
        keep = {e["file"] for e in entries.values()}
        for f in (d / "seg").iterdir():  # replaced, dropped, or orphaned by a crash
            if f.name not in keep:
                f.unlink(missing_ok=True)
        for legacy in _LEGACY:
            (d / legacy).unlink(missing_ok=True)
        return self._apply(user_id, d, entries, written).n

    def rebuild(self, user_id: Owner) -> int:
        """Re-index all of the user's chunks from the store; returns the corpus size."""
        n = self._commit(user_id, None, everything=True)
        self._verified.add(OwnerScope.of(user_id))
        return n

    def add_document(
        self, user_id: Owner, document_id: str, chunks: list[tuple[str, str]] | None = None
    ) -> int:
        """(Re-)index one document, in time proportional to it; returns the corpus size. `chunks`:
        the (chunk id, text) pairs the caller has just written to the store (else they are read
        back from it). The caller's store write comes first, so the last writer here wins."""
        self._load(user_id)
        return self._commit(user_id, [str(document_id)], given=chunks)

    def remove_documents(self, user_id: Owner, document_ids: list[str]) -> int:
        """Drop these documents' entries (their chunks are already gone from the store)."""
        self._load(user_id)
        return self._commit(user_id, [], drop={str(d) for d in document_ids})

    # -- reading ----------------------------------------------------------------------------------

    def _apply(
        self, user_id: Owner, d: Path, entries: dict[str, dict], known: dict[str, Segment]
    ) -> _UserIndex:
        """Bring the in-memory index to `entries`, loading only segments it does not hold.
        Raises ValueError/OSError when a segment is missing or its hash disagrees."""
        with self._lock:
            idx = self._cache.get(OwnerScope.of(user_id)) or _UserIndex()
        for doc in [doc for doc in idx.segments if doc not in entries]:
            idx.remove(doc)
        for doc, e in entries.items():
            if idx.files.get(doc) == e["file"]:
                continue
            seg = known.get(e["file"])
            if seg is None:
                data = (d / "seg" / e["file"]).read_bytes()
                if _sha(data) != e["sha256"]:
                    raise ValueError(f"segment {e['file']} is damaged")
                seg = Segment.from_bytes(data)
            idx.add(seg, e["file"])
        idx.signature = self._signature(user_id)
        with self._lock:
            self._cache[OwnerScope.of(user_id)] = idx
        return idx

    def _load(self, user_id: Owner) -> _UserIndex:
        uid = OwnerScope.of(user_id)
        with self._ulock(uid):
            with self._lock:
                idx = self._cache.get(uid)
            sig = self._signature(uid)
            if idx is not None and sig is not None and idx.signature == sig:
                return idx
            try:
                with self._flock(uid, exclusive=False) as d:
                    entries = self._read_manifest(d)
                    if entries is None:
                        raise ValueError("no manifest")
                    idx = self._apply(uid, d, entries, {})
            except (OSError, ValueError, KeyError, TypeError):
                self.rebuild(uid)  # missing or damaged on disk: the store has the truth
                with self._lock:
                    return self._cache[uid]
            if uid not in self._verified:
                self._verified.add(uid)
                self._reconcile(uid, idx)
                with self._lock:
                    idx = self._cache[uid]
            return idx

    def _reconcile(self, user_id: Owner, idx: _UserIndex) -> None:
        """Re-read from the store only the documents whose chunk ids disagree with the index.
        The chunk count is compared first (cheap); the ids only when it differs, since a document
        whose write was cut short is re-ingested by its job's retry, which re-adds it here."""
        if self.store.count(user_id) == idx.n:
            return
        want = self._store_ids(user_id)
        have: dict[str, set[str]] = {doc: set(seg.ids) for doc, seg in idx.segments.items()}
        stale = sorted(doc for doc in want if have.get(doc) != want[doc])
        gone = {doc for doc in have if doc not in want}
        if stale or gone:
            self._commit(user_id, stale, drop=gone)

    def _store_ids(self, user_id: Owner) -> dict[str, set[str]]:
        res = self.store.get(user_id)  # ids and metadatas
        out: dict[str, set[str]] = {}
        for cid, m in zip(res["ids"], res["metadatas"], strict=True):
            out.setdefault(str(m["document_id"]), set()).add(cid)
        return out

    def search(
        self, user_id: Owner, query: str, k: int, document_ids: list[str] | None = None
    ) -> list[tuple[str, str, float]]:
        """(chunk_id, document_id, score) of the best `k` matches with a positive score."""
        if document_ids is not None and not document_ids:
            return []
        tokens = tokenize([query], self.stemmer)[0]
        if not tokens or k <= 0:
            return []
        idx = self._load(user_id)
        with self._ulock(user_id):
            return idx.search(
                tokens, k, None if document_ids is None else {str(d) for d in document_ids}
            )

    def chunk_counts(self, user_id: Owner) -> dict[str, int]:
        """Document id -> its number of chunks, for every document the scope's index holds."""
        idx = self._load(user_id)
        with self._ulock(user_id):
            return {doc: len(seg.ids) for doc, seg in idx.segments.items()}

    def segments(self, user_id: Owner, document_ids: list[str]) -> dict[str, tuple[str, list[str]]]:
        """Document id -> (its segment file, its chunk ids) for those of `document_ids` indexed.
        A segment file gets a fresh name whenever its document is indexed again."""
        idx = self._load(user_id)
        with self._ulock(user_id):
            return {
                str(d): (idx.files[str(d)], list(idx.segments[str(d)].ids))
                for d in document_ids
                if str(d) in idx.segments
            }

    def indexed_ids(self, user_id: Owner) -> set[str] | None:
        """The chunk ids the user's index on disk holds; None when it is missing or unreadable."""
        d = self._dir(user_id)
        if not (d / MANIFEST).exists():
            return None
        try:
            with self._flock(user_id, exclusive=False):
                entries = self._read_manifest(d)
                if entries is None:
                    return None
                out: set[str] = set()
                for e in entries.values():
                    data = (d / "seg" / e["file"]).read_bytes()
                    if _sha(data) != e["sha256"]:
                        return None
                    out.update(Segment.from_bytes(data).ids)
                return out
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_current(self, user_id: Owner) -> bool:
        """Whether the index on disk holds exactly the user's chunks in the store (no chunks and
        no index count as current). A writer that was killed before indexing leaves it not."""
        have = self.indexed_ids(user_id)
        want = set(self.store.get(user_id)["ids"])
        return have == want or (have is None and not want)

    def evict(self, user_id: Owner) -> None:
        """Drop the in-memory index (it is loaded from disk again on the next search)."""
        with self._lock:
            self._cache.pop(OwnerScope.of(user_id), None)

    def forget(self, user_id: Owner) -> None:
        with self._ulock(user_id):
            with self._lock:
                self._cache.pop(OwnerScope.of(user_id), None)
                self._verified.discard(OwnerScope.of(user_id))
            shutil.rmtree(self._dir(user_id), ignore_errors=True)


def _canonical(entries: dict) -> bytes:
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


def _atomic_write(path: Path, data: bytes, *, fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if fsync:
        dfd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
