"""Step 4: uploads.json -> `uploads` (outcome migrated), linked to the migrated document when
the filename names exactly one of the user's documents."""

from __future__ import annotations

import mimetypes

from pharmgpt.services import file_types

from .. import ids
from ..ledger import RunLedger
from ..legacy import LegacyUser, digest, iso


def _mime(filename: str) -> str | None:
    """What an upload of this name records today (the file-type table), else the platform's
    guess."""
    ft = file_types.by_extension(filename)
    return ft.mime if ft else mimetypes.guess_type(filename)[0]


class UploadStep:
    def __init__(self, run: RunLedger):
        self.run = run
        self.target, self.source, self.counts = run.target, run.source, run.counts
        self.progress = run.progress

    async def migrate(self, u: LegacyUser, uid: str) -> None:
        t = self.target
        ups = self.source.uploads(u)
        if not ups:
            return
        L = u.legacy_id
        keys = [f"{L}#{x.index}" for x in ups]
        mine = await self.run.mine("upload", keys)
        existing = await t.existing("uploads", [ids.upload_id(L, x.index) for x in ups])
        prior = await self.run.prior_done("upload", keys)
        docs = await t.select_in("documents", "id,filename,conversation_id", "user_id", [uid])
        by_name: dict[str, list] = {}
        for d in docs:
            by_name.setdefault(d["filename"], []).append(d)
        fallback = self.run.fallback_time()
        claims, skips, rows = [], [], []
        for x, key in zip(ups, keys, strict=True):
            up_id = ids.upload_id(L, x.index)
            target = {"upload_id": up_id, "user_id": uid}
            checksum = digest([x.filename, x.file_size, iso(x.uploaded_at)])
            m = mine.get(key)
            if m and m["state"] == "done":
                self.counts["uploads_written"] += 1
                continue
            if not (m and m["state"] == "pending"):
                if up_id in existing:
                    skips.append(
                        self.run.item("upload", key, target, "skipped", checksum, "exists")
                    )
                    self.counts["uploads_existing"] += 1
                    continue
                if key in prior:
                    skips.append(
                        self.run.item(
                            "upload",
                            key,
                            target,
                            "skipped",
                            checksum,
                            "migrated by an earlier run and deleted since",
                        )
                    )
                    continue
            match = by_name.get(x.filename, [])
            doc = (
                match[0] if len(match) == 1 else None
            )  # linked only when the filename is unambiguous
            claims.append(self.run.item("upload", key, target, "pending", checksum))
            rows.append(
                {
                    "id": up_id,
                    "user_id": uid,
                    "document_id": doc and doc["id"],
                    "conversation_id": doc and doc["conversation_id"],
                    "filename": x.filename,
                    "file_type": _mime(x.filename),
                    "file_size": x.file_size,
                    "sha256": None,
                    "outcome": "migrated",
                    "uploaded_at": iso(x.uploaded_at or fallback),
                }
            )
        await t.put_items(claims + skips)
        failed = await self.run.insert_rows("uploads", rows, claims)
        done = [dict(c, state="done") for c in claims if c["legacy_key"] not in failed]
        await t.put_items(done)
        self.counts["uploads_written"] += len(done)
        self.progress.advance("uploads", len(ups))
