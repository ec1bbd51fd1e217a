"""tortoise's SQLite client, with transactions that take the write lock when they begin.

A deferred transaction (tortoise's plain BEGIN) that reads and then writes cannot wait for the
lock: when another process committed after its read, SQLite answers "database is locked" at
once, whatever busy_timeout says (its snapshot is stale, so waiting could not help). BEGIN
IMMEDIATE asks for the write lock first, so busy_timeout applies and the transaction waits its
turn. Inside one process nothing changes: tortoise already runs one SQLite transaction at a
time on its single connection. Readers outside a transaction are never blocked (WAL).
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError, TransactionManagementError

# sqlite3 adapts date and datetime but not time, and tortoise adds none: without this a
# TimeField (a closure's hours, bot/models/bookings.py) cannot be written or filtered on. Stored
# as ISO text, which tortoise's TimeField reads back.
sqlite3.register_adapter(dt.time, dt.time.isoformat)


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):  # waited busy_timeout for the other writer: as any query
                raise OperationalError(exc) from exc
            raise TransactionManagementError(exc) from exc


class _Context(SqliteTransactionContext):
    """tortoise's, but a BEGIN that fails (now: the other writer held on past busy_timeout)
    gives back the process's transaction lock and the connection it had swapped in; tortoise's
    keeps both, and every later query of the process would hang or use a dead transaction."""

    async def __aenter__(self) -> _ImmediateTransaction:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            self._trxlock.release()
            raise
        return self.connection


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return _Context(_ImmediateTransaction(self), self._lock)


client_class = ImmediateSqliteClient  # what tortoise looks up in an "engine" module
