"""The embedded database serves one process: a lock file next to the SQLite file, held while the app runs.

Two processes on one SQLite file would each keep their own in-memory view of budgets and allowances and each
hand out the same money (SQLite has no LISTEN/NOTIFY to tell the other). The second start is refused with a
clear message instead; several replicas need PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL


class DatabaseInUse(RuntimeError):
    """Another process serves this embedded database."""


@dataclass
class EmbeddedLock:
    path: Path | None
    fd: int | None = None

    @classmethod
    def take(cls, url: URL) -> EmbeddedLock:
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return cls(None)
        path = Path(f"{Path(url.database).resolve()}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"another spendplane process (pid {holder}) is serving {url.database}: the embedded SQLite "
                "database serves one process; stop it first, or point DATABASE_URL at PostgreSQL for replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = None
