"""Start-up on a database an earlier version made (bot/infra/db.py): the tables exist, so
generate_schemas adds nothing, but the columns added since (inbound_message's lease) are added,
on SQLite and PostgreSQL, by every start that finds them missing and by no other."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from bot.chat.dedup import DatabaseDedup
from bot.chat.inbound import Inbound
from bot.infra import db, sql
from bot.infra.db import OperationalError, close_database, open_database
from bot.models import InboundMessage, Store
from tests.support import WriteLock


async def drop_columns(*columns: str) -> None:
    conn = connections.get("default")
    for column in columns:
        await conn.execute_script(f'ALTER TABLE inbound_message DROP COLUMN "{column}"')


async def test_a_database_from_before_leases_gets_the_lease_columns(db_url, any_db):
    await open_database(db_url)
    try:
        await drop_columns("owner", "lease_until")
        # A claim left processing by the old version, whose worker is gone.
        await sql.execute('INSERT INTO inbound_message (dedup_key, "user", kind, status, '
                          "received_at) VALUES ($1, $2, $3, 'processing', $4)",
                          "msg:old", "o_old", "text", dt.datetime.now(dt.UTC))
    finally:
        await close_database()

    for _ in range(2):  # the second start finds nothing to add
        await open_database(db_url)
        await close_database()

    await open_database(db_url)
    try:
        dedup = DatabaseDedup()
        assert await dedup.claim(Inbound(channel="wechat", user="o_old", kind="text",
                                         text="积分", dedup_key="msg:old", account="gh"))
        row = await InboundMessage.get(dedup_key="msg:old")
        assert row.owner == dedup.owner and row.lease_until > dt.datetime.now(dt.UTC)
        assert row.status == "processing" and row.user == "o_old"
    finally:
        await close_database()


async def test_a_missing_column_that_cannot_be_null_is_refused(db_url, any_db):
    await open_database(db_url)
    try:
        await drop_columns("kind")
    finally:
        await close_database()
    with pytest.raises(RuntimeError, match=r"inbound_message\.kind is missing.*aerich upgrade"):
        await open_database(db_url)
    await close_database()


async def test_a_sqlite_transaction_that_reads_then_writes_waits_for_another_writer(tmp_path):
    """tortoise's deferred BEGIN would read a snapshot, then meet the other process's commit
    when it writes: "database is locked" at once, busy_timeout or not. Ours waits its turn."""
    url = f"sqlite://{tmp_path}/lock.db"
    await open_database(url)
    try:
        await Store.create(code="S001", name="总店")
        with WriteLock(str(tmp_path / "lock.db")) as lock:

            async def read_then_write() -> None:
                async with in_transaction():
                    store = await Store.get(code="S001")
                    store.name += "（新）"
                    await store.save()

            writer = asyncio.create_task(read_then_write())
            await asyncio.sleep(0.5)  # the other process writes, then commits, meanwhile
            lock.release.set()
            await writer
        assert (await Store.get(code="S001")).name == "总店（新）"
    finally:
        await close_database()


async def test_a_transaction_that_waited_out_busy_timeout_fails_as_locked(tmp_path, monkeypatch):
    """What the CLI turns into its one line (bot/cli main): an OperationalError is_locked names,
    whether the lock met the BEGIN or a query."""
    monkeypatch.setattr(db, "SQLITE_BUSY_MS", 100)
    url = f"sqlite://{tmp_path}/lock.db"
    await open_database(url)
    try:
        await Store.create(code="S001", name="总店")
        with WriteLock(str(tmp_path / "lock.db")):
            with pytest.raises(OperationalError) as failed:
                async with in_transaction():
                    await Store.create(code="S002", name="分店")
            assert db.is_locked(failed.value)
        # The process goes on: its connection and transaction lock were given back.
        assert await Store.filter(code="S002").count() == 0
        async with in_transaction():
            await Store.create(code="S002", name="分店")
        assert await Store.filter(code="S002").count() == 1
    finally:
        await close_database()
