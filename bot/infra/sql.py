"""Hand-written SQL for the statements every message makes, on the ORM's own connection.

tortoise builds each statement with pypika and turns each row into a model: about 100 µs a
statement, half of the webhook's CPU (docs/benchmarks.md). The few statements on that path
are written by hand, with PostgreSQL's $1 placeholders; on SQLite they become "?".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from typing import Any, TypeVar

from tortoise import connections
from tortoise.fields import DatetimeField
from tortoise.models import Model

M = TypeVar("M", bound=Model)

_PLACEHOLDER = re.compile(r"\$\d+")


async def fetch(sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows as dicts. Each of $1, $2, … appears once, in order (SQLite's "?" are positional).
    Inside in_transaction() this runs on the transaction's connection, like the ORM."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        sql = _for_sqlite(sql)
    return await conn.execute_query_dict(sql, list(params))


def dialect() -> str:
    """"sqlite" or "postgres": for the few statements that differ (FOR UPDATE SKIP LOCKED)."""
    return connections.get("default").capabilities.dialect


def placeholders(start: int, count: int) -> str:
    """"$3, $4, $5" for an IN list of `count` values whose first is parameter `start`."""
    return ", ".join(f"${n}" for n in range(start, start + count))


async def execute(sql: str, *params: Any) -> None:
    """A statement whose rows, if any, we do not need (an UPDATE)."""
    await fetch(sql, *params)


@functools.cache
def _for_sqlite(sql: str) -> str:
    numbers = [int(p[1:]) for p in _PLACEHOLDER.findall(sql)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"placeholders must be $1, $2, … once each, in order: {sql!r}")
    return _PLACEHOLDER.sub("?", sql)


def columns(model: type[Model], alias: str) -> str:
    """A model's columns for a SELECT, each named "<alias>.<column>" so that two models can
    share one row (a JOIN) without their "id"s colliding."""
    return ", ".join(f'{alias}."{column}" AS "{alias}.{column}"'
                     for column in _db_columns(model))


def model_from(model: type[M], row: dict[str, Any], alias: str) -> M | None:
    """The model instance the ORM would have made from these columns (None when a LEFT JOIN
    found nothing): tortoise's own row-to-model step, so values convert exactly as in a
    query through the ORM."""
    values = {column: row[key] for column, key in _row_keys(model, alias)}
    if values[model._meta.db_pk_column] is None:
        return None
    for column in _datetime_columns(model):
        # SQLite hands datetimes back as text, which tortoise parses with the pure-Python
        # iso8601 (about 4 % of the webhook's time under load); fromisoformat, in C, gives the
        # same datetime. Anything it does not take is left to tortoise.
        if isinstance(text := values[column], str):
            with contextlib.suppress(ValueError):
                values[column] = dt.datetime.fromisoformat(text)
    return model._init_from_db(**values)


@functools.cache
def _row_keys(model: type[Model], alias: str) -> tuple[tuple[str, str], ...]:
    return tuple((column, f"{alias}.{column}") for column in _db_columns(model))


@functools.cache
def _datetime_columns(model: type[Model]) -> tuple[str, ...]:
    return tuple(column for name, column in model._meta.fields_db_projection.items()
                 if isinstance(model._meta.fields_map[name], DatetimeField))


@functools.cache
def _db_columns(model: type[Model]) -> tuple[str, ...]:
    # Asked at run time only, once tortoise is up: before that a model has no "_id" columns.
    return tuple(sorted(model._meta.fields_db_projection.values()))


def as_date(value: dt.date | str | None) -> dt.date | None:
    """SQLite hands dates back as ISO text, PostgreSQL as dates."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)
