"""members.create_member, the one place a member row is made (registration, the CSV import and
the sandbox call it), and ensure_follower, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

from bot.models import Follower, Member
from bot.rules.cards import is_valid_card_number
from bot.rules.parsing import Birthday
from bot.runtime import open_bot
from bot.services import members
from tests.support import Clock, make_config


async def test_a_new_member_gets_a_fresh_card_number_and_a_sealed_phone(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        prefix, tier = bot.config.shop.card_prefix, bot.config.tiers[0].name
        first = await members.create_member(bot.vault, prefix, "13800138000", name="王小明",
                                            birthday=Birthday(5, 1, 1990), tier=tier)
        second = await members.create_member(bot.vault, prefix, "13800138001", tier=tier)
        for member in (first, second):
            assert member.card_no.startswith(prefix) and is_valid_card_number(member.card_no)
            assert member.registered_at is not None
        assert first.card_no != second.card_no
        stored = await Member.get(id=first.id)
        assert "13800138000" not in stored.phone_enc
        assert bot.vault.decrypt(stored.phone_enc) == "13800138000"
        assert await members.find_by_phone(bot, "13800138000") == stored
        assert (stored.name, stored.birth_year, stored.birth_month, stored.birth_day) == (
            "王小明", 1990, 5, 1)


async def test_a_kept_card_number_and_registration_time_are_kept(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        when = dt.datetime(2020, 3, 1, 2, 0, tzinfo=dt.UTC)
        member = await members.create_member(
            bot.vault, bot.config.shop.card_prefix, "13800138002", card_no="12345678",
            tier=bot.config.tiers[-1].name, tier_floor=bot.config.tiers[-1].name,
            registered_at=when)
        stored = await Member.get(id=member.id)
        assert (stored.card_no, stored.registered_at, stored.tier_floor) == (
            "12345678", when, bot.config.tiers[-1].name)


async def test_first_messages_at_once_make_one_follower(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False):
        results = await asyncio.gather(*(members.ensure_follower("o_race") for _ in range(6)))
        assert len({follower.id for follower, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert await Follower.filter(openid="o_race").count() == 1
        follower, created = await members.ensure_follower("o_race")
        assert not created and follower.id == results[0][0].id
