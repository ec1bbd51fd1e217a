"""The indexes the console's figures read by (bot/infra/db.py REPORT_INDEXES) are made at
start-up in a database an earlier version created without them, on SQLite and PostgreSQL;
starting again makes nothing twice."""

from __future__ import annotations

from bot.infra import sql
from bot.infra.db import REPORT_INDEXES, close_database, index_name, open_database


async def indexes() -> dict[str, str]:
    """Index name → table."""
    if sql.dialect() == "sqlite":
        rows = await sql.fetch("SELECT name, tbl_name AS t FROM sqlite_master "
                               "WHERE type = 'index'")
    else:
        rows = await sql.fetch("SELECT indexname AS name, tablename AS t FROM pg_indexes "
                               "WHERE schemaname = current_schema()")
    return {row["name"]: row["t"] for row in rows}


async def test_a_database_without_the_report_indexes_gets_them_at_start(db_url, any_db):
    names = {index_name(table, columns): table for table, columns in REPORT_INDEXES}
    await open_database(db_url)
    try:
        assert names.items() <= (await indexes()).items()
        for name in names:  # as a database made before them
            await sql.execute(f'DROP INDEX "{name}"')
        assert not names.keys() & (await indexes()).keys()
    finally:
        await close_database()
    for _ in range(2):  # the second start finds them there
        await open_database(db_url)
        try:
            found = await indexes()
            assert names.items() <= found.items()
        finally:
            await close_database()


async def test_the_figures_of_today_use_the_indexes_on_sqlite(db_url):
    """The time-range reads of today's rows are index searches, not scans of the table."""
    await open_database(db_url)
    try:
        if sql.dialect() != "sqlite":
            return
        for table, column, store in (("purchase", "created_at", "store_id"),
                                     ("points_entry", "created_at", None),
                                     ("member", "registered_at", "store_id"),
                                     ("coupon", "issued_at", None),
                                     ("tier_change", "created_at", None)):
            where = f"{column} >= '2026-01-01' AND {column} < '2026-01-02'"
            if store:
                where += f" AND {store} = 1"
            plan = " ".join(str(row["detail"]) for row in await sql.fetch(
                f"EXPLAIN QUERY PLAN SELECT COUNT(*) FROM {table} WHERE {where}"))
            assert "USING" in plan and "INDEX" in plan, (table, plan)
    finally:
        await close_database()
