"""Private local files (issue 12, M8): the data directory is 0700 and what is under it 0600.

Every entry point calls `private_umask()` first, so whatever a library creates
(Chroma's segment files, SQLite's WAL, Postgres logs) is private too; the places
that create files also set their modes explicitly, so a process started with a
looser umask (a test, an embedding host) still writes private files.
`secure_tree` repairs a data directory made by an older version.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> int:
    """Make everything this process creates from now on private to its OS account."""
    return os.umask(0o077)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700. An existing directory loses group/other access
    except a bare o+x, which the embedded Postgres's service user may need (see secure_tree)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for p in missing:  # mkdir's mode is cut by the umask, and parents get the default
        _chmod(p, DIR_MODE)
    if path not in missing:
        try:
            current = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return path
        if current & 0o076:
            _chmod(path, current & 0o701)
    return path


def private_file(path: Path) -> Path:
    """Make an existing file 0600 (no-op when it does not exist)."""
    _chmod(Path(path), FILE_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND):
    """A binary file opened for writing, created 0600 (and made 0600 if it existed looser)."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab" if flags & os.O_APPEND else "wb")


def secure_tree(root: Path) -> int:
    """Remove group/other permissions from everything under `root`; returns how many changed.

    A directory keeps a bare o+x (traverse, never list): running as root, the embedded
    Postgres runs as its own service user and needs it on the parents of its data
    directory (localbase/postgres.py). Symlinks are not followed; special files are left alone.
    """
    root = Path(root)
    if not root.exists():
        return 0
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [None, *filenames]:
            p = Path(dirpath) if name is None else Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or not (
                stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)
            ):
                continue
            keep = 0o701 if stat.S_ISDIR(st.st_mode) else 0o700
            if st.st_mode & 0o077 & ~keep:
                _chmod(p, stat.S_IMODE(st.st_mode) & keep)
                changed += 1
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return changed


def loose_modes(root: Path) -> list[tuple[str, str]]:
    """(path, mode) of every directory or file under `root` that group or others can read or
    write (a directory's bare o+x, traverse without listing, is allowed: see secure_tree)."""
    out = []
    for dirpath, _dirs, filenames in os.walk(root):
        for p in [Path(dirpath), *(Path(dirpath) / f for f in filenames)]:
            try:
                st = p.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            allowed = 0o001 if stat.S_ISDIR(st.st_mode) else 0
            if st.st_mode & 0o077 & ~allowed:
                out.append((str(p), oct(stat.S_IMODE(st.st_mode))))
    return out


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:  # not ours (e.g. a Postgres data dir owned by its service user)
        pass
