"""The hand-written statements of the per-message path (bot/infra/sql.py) against what the ORM
gives, on SQLite and PostgreSQL: the same models, the same card, the same rules."""

from __future__ import annotations

import datetime as dt

import pytest
from tortoise.transactions import in_transaction

from bot.infra import sql
from bot.models import Conversation, Follower, Member, PointsEntry, PunchCard, Purchase
from bot.rules import tiers
from bot.runtime import open_bot
from bot.services import loyalty, members
from tests.services.test_ledger import new_member
from tests.support import Clock, make_config


def test_placeholders_must_run_in_order_for_sqlite():
    assert sql._for_sqlite("SELECT $1, $2 WHERE x = $3") == "SELECT ?, ? WHERE x = ?"
    for bad in ("SELECT $2, $1", "SELECT $1, $1", "SELECT $1, $3"):
        with pytest.raises(ValueError, match="in order"):
            sql._for_sqlite(bad)


def _fields(model) -> dict:
    return {name: getattr(model, name) for name in model._meta.fields_db_projection}


async def test_member_of_builds_the_models_the_orm_would(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        member = await new_member(bot, 120)
        now = bot.now()
        await Member.filter(id=member.id).update(birth_year=1990, birth_month=5, birth_day=1,
                                                 marketing_opt_out_at=now, tier_floor="银卡会员")
        await Follower.create(openid="o_sql_1", member=member, scene="store:S001",
                              following=False, subscribed_at=now, message_window_at=now,
                              message_window_used=2)
        await Follower.create(openid="o_sql_2")

        follower, found = await members.member_of("o_sql_1")
        assert _fields(follower) == _fields(await Follower.get(openid="o_sql_1"))
        assert _fields(found) == _fields(await Member.get(id=member.id))
        assert follower.following is False and found.points == 120
        assert found.marketing_opt_out_at == now and follower.message_window_at == now

        stranger, nobody = await members.member_of("o_sql_2")  # the LEFT JOIN finds no member
        assert nobody is None and stranger.member_id is None
        newcomer, nobody = await members.member_of("o_sql_3")  # first contact makes the row
        assert nobody is None and await Follower.get(openid="o_sql_3") == newcomer


async def test_dialogs_load_what_the_orm_stored(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        dialog = await bot.dialogs.load("wechat:o_sql_d")
        assert dialog.state is None and dialog.data == {}
        dialog.set("reg.phone", phone_hint="138****8000", tries=[1, 2])
        await bot.dialogs.save(dialog)
        again = await bot.dialogs.load("wechat:o_sql_d")
        stored = await Conversation.get(user="wechat:o_sql_d")
        assert (again.state, again.data, again.updated_at) == (
            "reg.phone", {"phone_hint": "138****8000", "tries": [1, 2]}, stored.updated_at)


async def test_the_dialog_comes_with_the_member_lookup(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        member = await new_member(bot, 50)
        await Follower.create(openid="o_sql_j1", member=member)
        await Follower.create(openid="o_sql_j2")
        for user in ("wechat:o_sql_j1", "wechat:o_sql_j3"):  # j3: a dialog, no follower row yet
            dialog = await bot.dialogs.load(user)
            dialog.set("reg.phone", tries=[1])
            await bot.dialogs.save(dialog)

        for openid in ("o_sql_j1", "o_sql_j2", "o_sql_j3", "o_sql_j4"):
            user = f"wechat:{openid}"
            follower, found, row = await members.member_with_conversation(openid, user)
            expected_follower, expected_member = await members.member_of(openid)
            assert _fields(follower) == _fields(expected_follower)
            assert (found and _fields(found)) == (expected_member and _fields(expected_member))
            stored = await Conversation.get_or_none(user=user)
            assert (row and _fields(row)) == (stored and _fields(stored)), openid

            _, _, dialog = await bot.dialogs.load_with_member(user, openid)
            alone = await bot.dialogs.load(user)
            assert (dialog.user, dialog.state, dialog.data, dialog.updated_at) == (
                alone.user, alone.state, alone.data, alone.updated_at)
        assert found is None and row is None  # o_sql_j4: first contact, nothing stored


async def test_card_summary_follows_the_rules(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        member = await new_member(bot)
        now, today = bot.now(), bot.today()

        async def bought(key: str, fen: int, days_ago: int, voided: bool = False) -> None:
            row = await Purchase.create(member=member, amount=fen, idempotency_key=key)
            await Purchase.filter(id=row.id).update(
                created_at=now - dt.timedelta(days=days_ago),
                voided_at=now if voided else None)

        await bought("p1", 30_000, 1)
        await bought("p2", 20_000, 364)
        await bought("p3", 99_900, 366)            # older than 12 months: not in the basis
        await bought("p4", 50_000, 2, voided=True)  # voided: not in the basis

        async def card(key: str, name: str, remaining: int, days: int) -> None:
            await PunchCard.create(member=member, product=key, name=name, visits=10,
                                   remaining=remaining, idempotency_key=key,
                                   expires_on=today + dt.timedelta(days=days))

        await card("c1", "洗剪吹10次卡", 4, 200)
        await card("c2", "护理5次卡", 5, 20)
        await card("c3", "头疗3次卡", 0, 100)     # used up
        await card("c4", "旧卡", 3, -1)           # expired yesterday

        async def lot(key: str, points: int, days: int) -> None:
            await PointsEntry.create(member=member, delta=points, kind="earn", reason="测试",
                                     idempotency_key=key, balance_after=0, remaining=points,
                                     expires_on=today + dt.timedelta(days=days))

        await lot("l1", 10, 5)
        await lot("l2", 15, 5)    # the same day: one line
        await lot("l3", 7, 30)    # the last day shown
        await lot("l4", 99, 31)   # too far off

        summary = await loyalty.card_summary(bot, await Member.get(id=member.id))
        step = tiers.progress(bot.config.tiers, member.tier, 50_000)
        assert (summary.next_tier, summary.to_next_tier_fen) == (step.next, step.remaining_fen)
        assert await loyalty.rolling_spend(member.id, now) == 50_000
        assert summary.punch_cards == (
            loyalty.PunchLine("护理5次卡", 5, today + dt.timedelta(days=20)),
            loyalty.PunchLine("洗剪吹10次卡", 4, today + dt.timedelta(days=200)))
        assert summary.expiring == ((today + dt.timedelta(days=5), 25),
                                    (today + dt.timedelta(days=30), 7))


async def test_a_card_with_nothing_behind_it(db_url, any_db):
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        member = await new_member(bot)
        summary = await loyalty.card_summary(bot, member)
        step = tiers.progress(bot.config.tiers, member.tier, 0)
        assert summary == loyalty.CardSummary(member.card_no, member.name, member.tier, 0, 0,
                                              step.next, step.remaining_fen, (), ())


async def test_inside_a_transaction_the_statements_see_what_it_wrote(db_url, any_db):
    # purchases.record checks the tier (rolling_spend) before its transaction commits.
    async with open_bot(make_config(db_url), Clock(), scheduler=False) as bot:
        member = await new_member(bot)
        with pytest.raises(RuntimeError):
            async with in_transaction():
                await Purchase.create(member=member, amount=12_300, idempotency_key="tx:1")
                assert await loyalty.rolling_spend(member.id, bot.now()) == 12_300
                raise RuntimeError("roll back")
        assert await loyalty.rolling_spend(member.id, bot.now()) == 0
