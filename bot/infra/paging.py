"""Walking a large table in batches: keyset pagination (`key > last seen`, ordered by the key),
never OFFSET, which rereads every skipped row, and never every row at once.

    async for members in batches(Member.filter(erased_at=None), size=500):
        ...

A batch is fetched when the one before it has been handled, so rows the loop changes (a
reminder marked sent, a lot expired) are never fetched twice, and a row added meanwhile with a
larger key is still reached.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

M = TypeVar("M", bound=Model)
BATCH = 500


async def _pages(query: QuerySet, key: str, size: int, fetch: Callable[[QuerySet], Any],
                 key_of: Callable[[Any], Any]) -> AsyncIterator[list]:
    if size < 1:
        raise ValueError("a batch holds at least one row")
    after = None
    while True:
        page = query if after is None else query.filter(**{f"{key}__gt": after})
        rows = await fetch(page.order_by(key).limit(size))
        if not rows:
            return
        yield list(rows)
        after = key_of(rows[-1])


def batches(query: QuerySet[M], size: int = BATCH) -> AsyncIterator[list[M]]:
    """The query's model instances, `size` at a time, in id order."""
    return _pages(query, "id", size, lambda page: page, lambda row: row.id)


def value_batches(query: QuerySet, *fields: str, size: int = BATCH,
                  flat: bool = False) -> AsyncIterator[list[Any]]:
    """The query's `values_list(*fields)` rows, `size` at a time, paged on the first field
    (which must not repeat between rows: use a distinct query to page on a foreign key)."""
    if not fields:
        raise ValueError("name the fields, the key first")
    if flat and len(fields) > 1:
        raise ValueError("flat rows have one field")
    return _pages(query, fields[0], size,
                  lambda page: page.values_list(*fields, flat=flat),
                  (lambda row: row) if flat else (lambda row: row[0]))
