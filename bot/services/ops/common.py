"""What the backup, restore, export and import commands share."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

PG_HINT = ("backup and restore work on SQLite only; for PostgreSQL use pg_dump and pg_restore "
           "(pg_dump --format=custom --file=memberbot.dump \"$MEMBERBOT_DATABASE_URL\"; "
           "see README, Backups)")


class OpsError(Exception):
    """The command cannot go on; `status` is its exit code (2: bad input, 1: failure)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def stamp(now: dt.datetime, tz: dt.tzinfo) -> str:
    return now.astimezone(tz).strftime("%Y%m%d-%H%M%S")


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def sqlite_path(url: str) -> Path:
    """The database file behind a sqlite:// URL; PostgreSQL and anything else are refused."""
    if url.startswith(("postgres://", "postgresql://")):
        raise OpsError(PG_HINT, 2)
    if not url.startswith("sqlite://") or url == "sqlite://:memory:":
        scheme = url.partition("://")[0] or url  # never the whole URL: it may hold a password
        raise OpsError(f"database.url ({scheme}): only a SQLite database file can be backed up "
                       "or restored", 2)
    return Path(url.removeprefix("sqlite://"))


def file_uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove_with_sidecars(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        remove(Path(f"{path}{suffix}"))


