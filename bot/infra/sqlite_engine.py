"""tortoise's SQLite client, with transactions that take the write lock when they begin.

A deferred transaction (tortoise's plain BEGIN) that reads and then writes cannot wait for the
lock: when another process committed after its read, SQLite answers "database is locked" at
once, whatever busy_timeout says (its snapshot is stale, so waiting could not help). BEGIN
IMMEDIATE asks for the write lock first, so busy_timeout applies and the transaction waits its
turn. Inside one process nothing changes: tortoise already runs one SQLite transaction at a
time on its single connection. Readers outside a transaction are never blocked (WAL).
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(_ImmediateTransaction(self), self._lock)


client_class = ImmediateSqliteClient  # what tortoise looks up in an "engine" module
