"""The sandbox's crowd of demo members: written once, in every tier, with ledgers that add up,
so a campaign tried in the sandbox has someone to reach by each channel."""

from __future__ import annotations

import asyncio
import datetime as dt

from tortoise.functions import Sum

from bot.infra.vault import Vault
from bot.models import Follower, Member, PointsEntry, Purchase
from bot.rules import tiers
from bot.sandbox.crowd import CROWD_SIZE, crowd, seed_crowd
from bot.sandbox.runner import DEMO_MEMBERS, demo_phone
from tests.support import REPO_CONFIG

TODAY = dt.date(2026, 12, 2)
REPO_TIERS = REPO_CONFIG.tiers


def test_the_crowd_spans_every_tier_and_channel():
    people = crowd(TODAY)
    assert people == crowd(TODAY)  # the same crowd in every sandbox
    reached = {tiers.tier_for(REPO_TIERS, p.spend) for p in people}
    assert reached == {t.name for t in REPO_TIERS}
    assert any(p.openid is None for p in people)  # SMS only: never used WeChat
    assert any(p.openid and not p.following for p in people)  # unfollowed: SMS
    assert sum(p.openid is not None and p.following for p in people) > CROWD_SIZE // 2
    assert any(p.opted_out for p in people)
    assert any(p.birthday[1] == TODAY.month for p in people)
    for person in people:
        assert person.purchases and all(day <= TODAY for day, _ in person.purchases)
        assert all(fen > 0 for _, fen in person.purchases)
    # Some came back lately and some have not been seen for months (RFM's R).
    latest = [TODAY - max(day for day, _ in p.purchases) for p in people]
    assert min(latest) < dt.timedelta(days=30) and max(latest) > dt.timedelta(days=100)


async def test_seeding_twice_writes_the_crowd_once_with_ledgers_that_add_up(shop, any_db):
    vault = Vault(shop.config.security.data_key_bytes)
    before = await Member.all().count()
    # Two starts at once (a restart while the first still seeds) and one after.
    added = await asyncio.gather(seed_crowd(shop.config, vault, TODAY),
                                 seed_crowd(shop.config, vault, TODAY))
    assert sorted(added) == [0, CROWD_SIZE]
    assert await seed_crowd(shop.config, vault, TODAY) == 0
    assert await Member.all().count() == before + CROWD_SIZE

    people = {p.phone: p for p in crowd(TODAY)}
    seeded = await Member.filter(phone_hash__in=[vault.lookup_hash(p) for p in people])
    assert len(seeded) == CROWD_SIZE
    for member in seeded:
        person = people[vault.decrypt(member.phone_enc)]
        spent = await Purchase.filter(member_id=member.id).annotate(s=Sum("amount")) \
            .first().values_list("s", flat=True)
        assert spent == person.spend
        assert member.tier == tiers.tier_for(shop.config.tiers, person.spend)
        ledger = await PointsEntry.filter(member_id=member.id).annotate(s=Sum("delta")) \
            .first().values_list("s", flat=True)
        assert member.points == (ledger or 0) > 0
        assert (member.marketing_opt_out_at is not None) == person.opted_out
        follower = await Follower.get_or_none(member_id=member.id)
        assert (follower.openid if follower else None) == person.openid
        if follower:
            assert follower.following == person.following


def test_a_chat_knows_the_phone_of_each_seeded_wechat_account():
    """What `memberbot chat --openid …` shows the SMS of: the seeded member's own phone."""
    for person in crowd(TODAY):
        if person.openid:
            assert demo_phone(person.openid) == person.phone
    for openid, phone, _, _ in DEMO_MEMBERS:
        if openid:
            assert demo_phone(openid) == phone
    for stranger in ("o_demo_1", "o_demo_crowd_5", "o_demo_crowd_07", "o_demo_crowd_61",
                     "o_demo_crowd_٠٥"):
        assert demo_phone(stranger) is None, stranger
