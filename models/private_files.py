"""Files that hold secrets at rest (the embedded SQLite database with its -wal/-shm/-journal, the price-map cache)
are owner-only (0600) whatever the process umask: created with that mode and `fchmod`ed to it, and an existing
file with looser permissions is tightened, with a log line, whenever it is opened."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("spendplane.files")

PRIVATE_MODE = 0o600
#: The files SQLite keeps beside a database (it creates them with the database file's own mode).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def tighten(path: str | Path) -> bool:
    """Make an existing file owner-only; True when its mode had to change (logged). A missing file is left alone."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return False
    if mode & ~PRIVATE_MODE & 0o777 == 0 and mode & PRIVATE_MODE == PRIVATE_MODE:
        return False
    try:
        os.chmod(path, PRIVATE_MODE)
    except OSError as exc:
        log.warning("could not make %s owner-only (mode %04o): %s", path, mode, exc)
        return False
    log.warning("tightened the permissions of %s from %04o to %04o (owner only)", path, mode, PRIVATE_MODE)
    return True


def create_private(path: str | Path) -> None:
    """Create an empty owner-only file unless one exists (which is tightened instead)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        tighten(path)
        return
    except OSError:
        return  # a missing directory, a read-only disk: whoever opens the file next reports it
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the umask can only take bits away, but say it anyway
    finally:
        os.close(fd)


def protect_sqlite(database: str) -> None:
    """Before SQLite opens `database`: the file exists owner-only, and so do its companions (SQLite creates those
    with the database file's mode, so a 0600 database keeps new -wal and -shm files 0600 too)."""
    create_private(database)
    for suffix in SQLITE_COMPANIONS:
        tighten(f"{database}{suffix}")


def write_private_atomically(path: str | Path, text: str) -> None:
    """Replace `path` with `text` in one step (a temporary file renamed over it), owner-only."""
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)
