"""`pharmgpt migrate backup --source DIR --out FILE`: a tar.gz of the legacy tree
with a manifest (sha256 and size of every file) as its last member,
`MANIFEST.json`. Never overwrites: an existing FILE is an error, and the
archive is written under a temporary name and renamed into place only when
complete. `check_backup` re-reads an archive against its manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "MANIFEST.json"
_BUF = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BUF):
            h.update(block)
    return h.hexdigest()


def backup(source: Path | str, out: Path | str, *, progress=None) -> dict:
    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory")
    if out.exists():
        raise FileExistsError(f"{out} exists; a backup is never overwritten")
    if out.is_relative_to(source):
        raise ValueError("the backup file must not be inside the source tree")
    files: list[Path] = []
    skipped: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                skipped.append({"path": str(p.relative_to(source)), "reason": "not a regular file"})
                continue
            files.append(p)
    if progress:
        progress.start("backup", len(files))
    entries = []
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "xb") as raw:  # x: refuses an existing partial file too
        try:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                for p in files:
                    rel = p.relative_to(source).as_posix()
                    digest = _sha256(p)
                    info = tar.gettarinfo(str(p), arcname=f"user_data/{rel}")
                    with open(p, "rb") as f:
                        tar.addfile(info, f)
                    entries.append({"path": rel, "size": info.size, "sha256": digest})
                    if progress:
                        progress.advance("backup")
                manifest = {
                    "format": "pharmgpt-legacy-backup/1",
                    "source": str(source),
                    "created_at": datetime.now(UTC).isoformat(),
                    "files": entries,
                    "total_files": len(entries),
                    "total_bytes": sum(e["size"] for e in entries),
                    "skipped": skipped,
                }
                data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(data)
                info.mtime = int(datetime.now(UTC).timestamp())
                tar.addfile(info, io.BytesIO(data))
        except BaseException:
            raw.close()
            tmp.unlink(missing_ok=True)
            raise
    if out.exists():  # appeared while we were writing
        tmp.unlink(missing_ok=True)
        raise FileExistsError(f"{out} appeared during the backup; nothing overwritten")
    os.link(tmp, out)  # atomic, and fails instead of replacing
    tmp.unlink()
    if progress:
        progress.stop()
    return {
        "file": str(out),
        "sha256": _sha256(out),
        "total_files": len(entries),
        "total_bytes": manifest["total_bytes"],
        "skipped": skipped,
    }


def check_backup(path: Path | str) -> dict:
    """Every file in the archive against the manifest's sha256 and size."""
    bad, seen = [], 0
    with tarfile.open(path, "r:gz") as tar:
        manifest = json.load(tar.extractfile(MANIFEST))
        expected = {e["path"]: e for e in manifest["files"]}
        for member in tar:
            if member.name == MANIFEST or not member.isfile():
                continue
            rel = member.name.removeprefix("user_data/")
            h = hashlib.sha256()
            f = tar.extractfile(member)
            while block := f.read(_BUF):
                h.update(block)
            e = expected.pop(rel, None)
            seen += 1
            if e is None or e["sha256"] != h.hexdigest() or e["size"] != member.size:
                bad.append(rel)
    bad += sorted(expected)  # listed but absent
    return {"ok": not bad, "files": seen, "bad": bad}
