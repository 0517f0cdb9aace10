"""Is the ledger path still the file we have open? And if not, put our records back there.

A deleted SQLite file stays readable through the connections that have it open, so a process
that keeps writing into it loses nothing until it exits; then the next process starts from $0
and the monthly budget starts over. Each write compares the path's (device, inode) with the one
the ledger opened; on a change, ``recover_file`` copies the records into a new file at the path,
or merges them into the file that replaced it, and logs an error saying what happened.

The copy is made with SQLite's backup API into a temporary file that is renamed into place, and
the deleted file's stale ``-wal``/``-shm`` are removed first: a new database must never pick up
another database's write-ahead log. An advisory lock file serialises processes doing this at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["FileId", "file_id", "recover_file"]

log = logging.getLogger("mem0_routed")

FileId = tuple[int, int]


def file_id(path: Path) -> FileId | None:
    """``(device, inode)`` of the file at ``path``, ``None`` when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: open files cannot be deleted there anyway
        yield
        return
    with open(f"{path}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def recover_file(
    path: Path,
    old: sqlite3.Connection | None,
    schema: Callable[[sqlite3.Connection], None],
    old_wal: FileId | None = None,
) -> FileId | None:
    """Make ``path`` a ledger holding the records ``old`` (open on the vanished file) can still read.

    ``old_wal`` is the id of the vanished file's ``-wal``: if that log is still at the path, it and
    its ``-shm`` are unlinked before the new file is opened (``old`` keeps its own open handles).
    Returns the new file's id. Logs at ERROR level in every case: the user deleted or replaced a
    file that holds their spending history, and should know what we did about it.
    """
    with _locked(path):
        now = file_id(path)
        if now is None:
            tmp = Path(f"{path}.recover-{os.getpid()}")
            tmp.unlink(missing_ok=True)
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                if old is not None:
                    old.backup(dst)
                else:
                    schema(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
            for suffix in ("-wal", "-shm"):  # the deleted database's log must not meet the new one
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            os.replace(tmp, path)
            what = "recreated it with the records this process still had open" if old is not None else (
                "recreated it EMPTY (no open connection held the old records)")
            log.error("mem0-routed: the ledger file %s was deleted while in use; %s. The monthly budget "
                      "and the local share are counted from it: restore it from a backup if another "
                      "process wrote records this one never saw.", path, what)
        else:
            if old_wal is not None and file_id(Path(f"{path}-wal")) == old_wal:
                for suffix in ("-wal", "-shm"):  # ours, not the new file's: it must not read them
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            merged = 0
            if old is not None:
                db = sqlite3.connect(path, isolation_level=None)
                try:
                    schema(db)
                finally:
                    db.close()
                old.execute("ATTACH DATABASE ? AS fresh", (str(path),))
                try:
                    old.execute("BEGIN IMMEDIATE")
                    before = old.execute("SELECT COUNT(*) FROM fresh.usage").fetchone()[0]
                    # by content, not by row id: the other file numbers its own rows, and a record of
                    # ours whose id it happens to use must still be merged (its spend counts)
                    cols = ", ".join(r[1] for r in old.execute("PRAGMA main.table_info(usage)") if r[1] != "id")
                    old.execute(f"INSERT INTO fresh.usage ({cols}) SELECT {cols} FROM main.usage m WHERE NOT EXISTS "
                                "(SELECT 1 FROM fresh.usage f WHERE f.ts = m.ts AND f.call_kind = m.call_kind "
                                "AND f.model = m.model AND f.backend = m.backend AND f.cost_usd = m.cost_usd "
                                "AND f.latency_s = m.latency_s)")
                    old.execute("INSERT OR IGNORE INTO fresh.reservations SELECT * FROM main.reservations")
                    merged = old.execute("SELECT COUNT(*) FROM fresh.usage").fetchone()[0] - before
                    old.execute("COMMIT")
                finally:
                    with contextlib.suppress(sqlite3.Error):
                        old.execute("DETACH DATABASE fresh")
            log.error("mem0-routed: the ledger file %s was replaced by another file while in use; "
                      "switched to the new file and merged %d record(s) it lacked.", path, merged)
        return file_id(path)
