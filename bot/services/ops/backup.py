"""Backup and restore of a SQLite database (PostgreSQL: pg_dump, see README)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
from pathlib import Path

from bot.clock import utcnow
from bot.services.ops.common import (
    OpsError,
    file_uri,
    remove,
    remove_with_sidecars,
    sqlite_path,
    stamp,
)


def default_backup_path(db: Path, now: dt.datetime, tz: dt.tzinfo) -> Path:
    """<db folder>/backups/<db name>-<time>.db: beside the database (data/, which git ignores),
    never in the folder the command happens to run in; the sandbox's are named sandbox-…."""
    return db.parent / "backups" / f"{db.stem}-{stamp(now, tz)}.db"


async def backup(url: str, to: Path | None = None, *, now: dt.datetime | None = None,
                 tz: dt.tzinfo = dt.UTC) -> tuple[Path, int]:
    """Copy the SQLite database to `to` (default: default_backup_path) while it may be in use.
    Returns the path and its size in bytes."""
    db = sqlite_path(url)
    dest = to or default_backup_path(db, now or utcnow(), tz)
    size = await asyncio.to_thread(_backup_file, db, dest)
    return dest, size


def _backup_file(db: Path, dest: Path) -> int:
    if not db.is_file():
        raise OpsError(f"no database at {db}", 1)
    if dest.exists():
        raise OpsError(f"{dest} exists already; choose another --to", 2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    remove_with_sidecars(part)
    try:
        # mode=rw: never create an empty database where there was none.
        with contextlib.closing(sqlite3.connect(file_uri(db, "rw"), uri=True,
                                                timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(part)) as dst:
            # pages=-1: the whole database in one step, i.e. in one read transaction, so the copy
            # is the state of one instant; in WAL mode the server's writers are not blocked.
            src.backup(dst, pages=-1)
            # The copy inherits WAL mode from the source; make it a single self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise OpsError(f"the backup failed SQLite's quick_check: {check}", 1)
        os.replace(part, dest)
    except sqlite3.Error as exc:
        remove_with_sidecars(part)
        raise OpsError(f"backup of {db} failed: {exc}", 1) from None
    except BaseException:
        remove_with_sidecars(part)
        raise
    return dest.stat().st_size


# --- restore ---

SQLITE_HEADER = b"SQLite format 3\x00"


async def restore(url: str, source: Path, *, now: dt.datetime | None = None,
                  tz: dt.tzinfo = dt.UTC, card_serial_floor: int | None = None) -> Path | None:
    """Replace the SQLite database with the backup `source`. Returns where the previous database
    was kept (None if there was none). The server must be stopped: refused while another process
    has the database open.

    Card numbers issued after the backup are on cards and phones, but not in the backup: the
    restored database takes over the card serial's high-water mark of the database it replaces
    (or `card_serial_floor`, when that one cannot be read), so no number is issued twice."""
    db = sqlite_path(url)
    now = now or utcnow()
    return await asyncio.to_thread(_restore_file, db, source, now, stamp(now, tz),
                                   card_serial_floor)


def _restore_file(db: Path, source: Path, now: dt.datetime, when: str,
                  card_serial_floor: int | None) -> Path | None:
    if not source.is_file():
        raise OpsError(f"no file {source}", 2)
    with source.open("rb") as fh:
        if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise OpsError(f"{source} is not a SQLite database", 2)
    db.parent.mkdir(parents=True, exist_ok=True)
    # Checked and prepared as a copy beside the database (same file system: the final rename is
    # atomic), so the database is not touched until the backup is known to be good.
    incoming = db.with_name(f"{db.name}.restore-{when}")
    remove_with_sidecars(incoming)
    try:
        shutil.copyfile(source, incoming)
        wal = Path(f"{source}-wal")
        if wal.is_file():  # a copy of a database in WAL mode: bring its log along
            shutil.copyfile(wal, f"{incoming}-wal")
        _check_restorable(incoming, source)
        high_water = max(_card_serial_high_water(db, card_serial_floor), card_serial_floor or 0)
        _carry_card_serial(incoming, high_water, now)
        aside = _set_aside(db, when)
        os.replace(incoming, db)
    except BaseException:
        remove_with_sidecars(incoming)
        raise
    return aside


def _check_restorable(path: Path, shown: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=1)) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            if rows != [("ok",)]:
                raise OpsError(f"{shown} failed SQLite's integrity check: {rows[0][0]}", 2)
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'member'").fetchone():
                raise OpsError(f"{shown} has no member table: not a memberbot database", 2)
            # Fold any log into the file: what is swapped in is one self-contained file.
            conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError as exc:
        raise OpsError(f"{shown} is not a usable SQLite database ({exc})", 2) from None


def _card_serial_high_water(db: Path, floor: int | None) -> int:
    """The highest card serial the current database ever handed out (0 if there is none)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(file_uri(db, "ro"), uri=True,
                                                timeout=1)) as conn:
            if not _has_table(conn, "card_serial"):
                return 0
            serials = [conn.execute("SELECT coalesce(max(id), 0) FROM card_serial").fetchone()[0]]
            # With AUTOINCREMENT the sequence outlives deleted rows; count it too.
            if _has_table(conn, "sqlite_sequence"):
                serials += [seq for (seq,) in conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'card_serial'")]
            return max(serials)
    except sqlite3.Error as exc:
        if floor is not None:
            return floor
        raise OpsError(f"cannot read which card numbers {db} has issued ({exc}); card numbers "
                       "issued after the backup would be issued again. Give the highest card "
                       "number on a card with --last-card, then restore.", 1) from None


def _carry_card_serial(incoming: Path, high_water: int, now: dt.datetime) -> None:
    """Make the restored copy allocate after `high_water`: a row for the highest serial issued
    (the next one is its id + 1; whose card it was is not in the backup, but it is taken)."""
    with contextlib.closing(sqlite3.connect(incoming, timeout=1)) as conn:
        if not _has_table(conn, "card_serial"):
            return  # older than card serials: the bot makes the table on its first start
        restored = conn.execute("SELECT coalesce(max(id), 0) FROM card_serial").fetchone()[0]
        if high_water > restored:
            conn.execute("INSERT INTO card_serial (id, issued_at) VALUES (?, ?)",
                         (high_water, now.astimezone(dt.UTC).isoformat(sep=" ")))
            conn.commit()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def _set_aside(db: Path, when: str) -> Path | None:
    """Keep the current database as <db>.before-restore-<when>, its log folded in. Refused while
    anyone else has it open: leaving WAL mode needs the only connection."""
    if not db.exists():
        for suffix in ("-wal", "-shm"):
            remove(Path(f"{db}{suffix}"))
        return None
    aside = db.with_name(f"{db.name}.before-restore-{when}")
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if mode != "delete":
            raise OpsError(f"{db} is in use: stop memberbot serve and any workers first", 1)
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED") \
                or "locked" in str(exc):
            raise OpsError(f"{db} is in use ({exc}): stop memberbot serve and any workers "
                           "first", 1) from None
        # A damaged database (the reason for restoring, perhaps): kept aside exactly as it is.
    except sqlite3.DatabaseError:
        pass
    try:
        os.link(db, aside)  # the old file itself, not a copy; the rename below detaches it
    except OSError:
        shutil.copy2(db, aside)
    # The old database's log and shared memory must not meet the new file. After the switch to
    # DELETE there are none; a damaged database's log goes with it.
    wal = Path(f"{db}-wal")
    if wal.exists():
        os.replace(wal, f"{aside}-wal")
    remove(Path(f"{db}-shm"))
    return aside


