"""Database start-up and shutdown (tortoise-orm over aiosqlite or asyncpg)."""

from __future__ import annotations

import os
from pathlib import Path

from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.exceptions import IntegrityError, OperationalError, TransactionManagementError
from tortoise.transactions import in_transaction
from tortoise.utils import generate_schema_for_client

MODEL_MODULES = ["bot.models", "aerich.models"]

__all__ = ["IntegrityError", "OperationalError", "TransactionManagementError", "close_database",
           "is_locked", "open_database"]

# How long a SQLite connection waits for another's write lock before "database is locked".
SQLITE_BUSY_MS = 5000


def tortoise_config(url: str) -> dict:
    """The config dict tortoise and aerich take. SQLite waits on a locked file instead of
    failing at once, which matters when the CLI and the server share one file."""
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        path = url.removeprefix("sqlite://")
        connection: dict | str = {
            "engine": "bot.infra.sqlite_engine",
            "credentials": {"file_path": path, "busy_timeout": SQLITE_BUSY_MS,
                            "synchronous": "NORMAL"},
        }
    else:
        connection = expand_db_url(url.replace("postgresql://", "postgres://", 1))
        connection["credentials"].setdefault("maxsize", 20)
        # asyncpg resets every connection it takes back (RESET ALL, UNLISTEN, unlock…): a
        # round trip per query here. We set no session state and use only transaction-scoped
        # advisory locks, so there is nothing to reset.
        connection["credentials"]["reset"] = _keep_connection_as_is
    return {
        "connections": {"default": connection},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked": another process held the write lock past SQLITE_BUSY_MS
    (or a transaction that read first could not become a writer)."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


async def _keep_connection_as_is(connection) -> None:
    return None


# aerich reads this (pyproject.toml [tool.aerich]); the URL comes from the usual config.
TORTOISE_ORM = tortoise_config(
    os.environ.get("MEMBERBOT_DATABASE_URL", "sqlite://data/memberbot.db")
)


async def open_database(url: str, *, create_schema: bool = True) -> None:
    """Connect, and create any missing tables (first start needs no migration step)."""
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        Path(url.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
    # tortoise caches each model's SQL by connection name, not by dialect: drop it, or a
    # process that opened SQLite before (the tests) sends "?" placeholders to PostgreSQL.
    EXECUTOR_CACHE.clear()
    # The global fallback lets request tasks that aiohttp creates see the connection.
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    if create_schema:
        await _create_schema(url)


# Any constant: workers starting together on PostgreSQL take turns creating the schema.
_SCHEMA_LOCK = 727_274


async def _create_schema(url: str) -> None:
    if url.startswith("sqlite"):
        # SQLite's file lock serialises concurrent starters; IF NOT EXISTS does the rest.
        await Tortoise.generate_schemas(safe=True)
        await _add_missing_columns(connections.get("default"), "sqlite")
        await add_indexes(connections.get("default"))
        await _protect_audit_log(url)
        return
    # On PostgreSQL two "CREATE TABLE IF NOT EXISTS" at once can still collide, so the
    # whole schema is created under a transaction-scoped advisory lock.
    async with in_transaction() as conn:
        await conn.execute_query(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
        await generate_schema_for_client(conn, safe=True)
        await _add_missing_columns(conn, "postgres")
        await add_indexes(conn)
        await _protect_audit_log(url, conn)


async def _add_missing_columns(conn, dialect: str) -> None:
    """generate_schemas creates missing tables but not missing columns: a database made by an
    earlier version gets the nullable columns added since (inbound_message's lease). Adding a
    nullable column is safe on a full table and on a running one; anything else is a migration
    for aerich (README), refused here rather than failing at the first query."""
    if dialect == "sqlite":
        rows = await conn.execute_query_dict(
            "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m "
            "JOIN pragma_table_info(m.name) p WHERE m.type = 'table'")
    else:
        rows = await conn.execute_query_dict(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()")
    present = {(row["table_name"], row["column_name"]) for row in rows}
    for models in Tortoise.apps.values():
        for model in models.values():
            table = model._meta.db_table
            for name, column in model._meta.fields_db_projection.items():
                if (table, column) in present:
                    continue
                field = model._meta.fields_map[name]
                if not field.null:
                    raise RuntimeError(f"{table}.{column} is missing and cannot be added "
                                       "as it is NOT NULL: run the migrations (aerich upgrade)")
                sql_type = field.get_for_dialect(dialect, "SQL_TYPE")
                if dialect == "sqlite":
                    # Another worker starting at the same moment may have added it first.
                    try:
                        await conn.execute_script(
                            f'ALTER TABLE "{table}" ADD COLUMN "{column}" {sql_type} NULL')
                    except OperationalError as exc:
                        if "duplicate column" not in str(exc):
                            raise
                else:
                    await conn.execute_script(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS '
                                              f'"{column}" {sql_type} NULL')


# What the console's figures read by time (bot/services/reports.py: today's rows, and the
# nightly rollups' day ranges), beyond the indexes the models declare (booking (store_id,
# starts_at) and (status, starts_at), rating (store_id, created_at) are there already).
REPORT_INDEXES = (
    ("purchase", ("store_id", "created_at")),
    ("purchase", ("created_at",)),
    ("points_entry", ("created_at",)),
    ("member", ("store_id", "registered_at")),
    ("member", ("registered_at",)),
    ("rating", ("created_at",)),
    ("coupon", ("issued_at",)),
    ("coupon", ("redeemed_at",)),
    ("tier_change", ("created_at",)),
)


def index_name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


async def add_indexes(conn) -> None:
    """Indexes added after a table was first made: generate_schemas makes a model's indexes
    only with its table, so a database from an earlier version gets them here, at every start
    (IF NOT EXISTS: a no-op once made). They are not declared in the models, which would give
    a new database each twice. On PostgreSQL a start that makes one over a big table holds
    writes to it meanwhile (CREATE INDEX CONCURRENTLY cannot run in the schema's transaction);
    that happens once."""
    for table, columns in REPORT_INDEXES:
        cols = ", ".join(f'"{column}"' for column in columns)
        await conn.execute_script(f'CREATE INDEX IF NOT EXISTS "{index_name(table, columns)}" '
                                  f'ON "{table}" ({cols})')


async def _protect_audit_log(url: str, conn=None) -> None:
    """The audit log is append-only in the database itself, not only in the model: any UPDATE
    or DELETE of an audit row is refused, whatever code or tool sends it."""
    conn = conn or connections.get("default")
    if url.startswith("sqlite"):
        for verb in ("UPDATE", "DELETE"):
            await conn.execute_script(
                f"CREATE TRIGGER IF NOT EXISTS audit_entry_no_{verb.lower()} BEFORE {verb} "
                f"ON audit_entry BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); "
                "END;")
        return
    await conn.execute_script(
        "CREATE OR REPLACE FUNCTION memberbot_append_only() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'audit entries are append-only'; END; $$ LANGUAGE plpgsql;"
        "DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry;"
        "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
        "FOR EACH ROW EXECUTE FUNCTION memberbot_append_only();")


async def close_database() -> None:
    await Tortoise.close_connections()
