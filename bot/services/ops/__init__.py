"""Backups, restores, and members in and out as CSV (`memberbot backup|restore|export|import`).

* **backup** copies a SQLite database with SQLite's online backup API: one read transaction, so
  the copy is a consistent snapshot even while the server writes (WAL mode lets writers go on).
  It is written beside its final name and renamed when complete, in journal mode DELETE, so the
  backup is one self-contained file. PostgreSQL has pg_dump for this (see README).
* **restore** checks the backup (a SQLite file, integrity_check ok, a `member` table) on a copy
  next to the database, refuses while another process has the database open, keeps the current
  file as `<db>.before-restore-<time>` and swaps the copy in with one rename.
* **export** streams members in batches (keyset pagination on id), never all at once.
* **import** validates every row first and imports nothing if any row is bad; then imports in
  transactions of IMPORT_BATCH rows. A phone that is already a member is skipped, so running the
  same file again, or again after a crash, never imports anyone twice. Opening balances go
  through the points and stored-value ledgers, so their invariants hold from the first day.

All file and sqlite3 work runs in threads: the event loop never blocks on it.
"""

from bot.services.ops.backup import backup, restore
from bot.services.ops.common import OpsError, human_size, sqlite_path
from bot.services.ops.members_csv import (
    EXPORT_COLUMNS,
    ExportResult,
    Problem,
    Progress,
    export_members,
    export_members_to,
    import_members,
)

__all__ = ["EXPORT_COLUMNS", "ExportResult", "OpsError", "Problem", "Progress", "backup",
           "export_members", "export_members_to", "human_size", "import_members", "restore",
           "sqlite_path"]
