"""Uploaded bytes, content-addressed by SHA-256, for the ingestion worker.

On the embedded default they live in the data directory; the same interface
can be backed by Supabase Storage for a multi-machine install (not built yet).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pharmgpt.localbase.files import private_dir

_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, sha256: str, data: bytes) -> Path:
        path = self._path(sha256)
        if path.exists():
            return path
        private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def get(self, sha256: str) -> bytes:
        return self._path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
