"""The idempotent transaction (bot/infra/idempotent.py) on its own, on SQLite and PostgreSQL:
a repeat returns the first result, a concurrent repeat too, and a failure that is not a repeat
is raised, not hidden."""

from __future__ import annotations

import asyncio

import pytest

from bot.infra import idempotent
from bot.infra.db import IntegrityError
from bot.models import Store
from bot.runtime import open_bot
from tests.support import Clock, make_config


def _store(code: str):
    """find/act for 'create the store with this code': the code is the unique key."""
    calls = {"act": 0}

    async def act() -> Store:
        calls["act"] += 1
        await asyncio.sleep(0)  # let a concurrent copy run into the same key
        return await Store.create(code=code, name="测试店")

    return (lambda: Store.get_or_none(code=code)), act, calls


async def test_a_repeat_returns_the_first_result_without_acting(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        find, act, calls = _store("T-1")
        first = await idempotent.once(find, act)
        again = await idempotent.once(find, act)
        assert again.id == first.id and calls["act"] == 1


async def test_concurrent_copies_act_once_and_all_return_that_result(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        find, act, _ = _store("T-2")
        results = await asyncio.gather(*(idempotent.once(find, act) for _ in range(8)))
        assert {store.id for store in results} == {results[0].id}
        assert await Store.filter(code="T-2").count() == 1


async def test_without_looking_first_a_conflict_still_returns_the_first(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        find, act, calls = _store("T-3")
        first = await idempotent.once(find, act)
        again = await idempotent.once(find, act, look_first=False)
        assert again.id == first.id and calls["act"] == 2  # it tried, and the key refused


async def test_a_failure_that_is_not_a_repeat_is_raised_and_rolls_back(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        async def act() -> Store:
            await Store.create(code="T-4", name="测试店")
            raise IntegrityError("some other constraint")

        with pytest.raises(IntegrityError, match="some other constraint"):
            await idempotent.once(lambda: Store.get_or_none(code="T-4"), act)
        assert not await Store.exists(code="T-4")


async def test_only_the_named_conflicts_are_taken_for_repeats(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        find, act, _ = _store("T-5")
        await idempotent.once(find, act)

        async def refused() -> Store:
            raise LookupError("not a conflict")

        with pytest.raises(LookupError):
            await idempotent.once(find, refused, look_first=False)
        assert (await idempotent.once(find, refused, conflicts=(LookupError,),
                                      look_first=False)).code == "T-5"
