"""Birthday gifts (bot/services/birthdays.py): each member celebrating gets their tier's points,
coupon and greeting once a year, whatever runs again or at the same time; members who said 退订
still get a gift notice but no gift-less greeting; nobody else gets anything.

The repo's config.toml tiers: 普通会员 nothing (the greeting alone, birthday.j2), 银卡会员 100
points (birthday_silver.j2), 金卡会员 300 points and the BIRTHDAY coupon (birthday_gold.j2),
钻石会员 800 points and the coupon (birthday_diamond.j2).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest
import tortoise.timezone

from bot.infra.templates import Templates
from bot.models import (
    BirthdayGift,
    Coupon,
    CouponTemplate,
    Delivery,
    Follower,
    Member,
    PointsEntry,
)
from bot.rules import tiers
from bot.runtime import Bot, open_bot
from bot.services import birthdays, coupons, loyalty
from tests.support import REPO_CONFIG, SHANGHAI, Clock, at_local, make_config

DAY = dt.date(2031, 5, 20)
LONG_AGO = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
_serials = itertools.count(1)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    at_local(clock, DAY, 9)
    monkeypatch.setattr(tortoise.timezone, "now", clock)
    return clock


@pytest.fixture
async def bot(db_url, stand_ins, clock) -> AsyncIterator[Bot]:
    async with open_bot(make_config(db_url, stand_ins), clock, scheduler=False) as bot:
        yield bot


async def new_member(bot: Bot, *, born: tuple[int, int] | None = (5, 20), tier: str = "普通会员",
                     follows: bool = True, window: bool = True, **fields) -> Member:
    """A member born on `born` (month, day), registered long before DAY unless told otherwise;
    following the account with a customer-service window open unless told otherwise, so
    greetings really reach the WeChat stand-in."""
    fields.setdefault("registered_at", LONG_AGO)
    n = next(_serials)
    phone = f"136{n:08d}"
    month, day = born or (None, None)
    member = await Member.create(card_no=f"88{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                                 phone_enc=bot.vault.encrypt(phone), name=f"会员{n}", tier=tier,
                                 birth_year=1990, birth_month=month, birth_day=day, **fields)
    if follows:
        await Follower.create(openid=openid_of(member), member=member,
                              message_window_at=bot.now() if window else None)
    return member


def openid_of(member: Member) -> str:
    return f"o_bday_{member.id}"


def greetings(stand_ins, member: Member) -> list[str]:
    return [m.content for m in stand_ins.wechat.messages if m.openid == openid_of(member)]


async def gifts_of(member: Member) -> tuple[list[int], int, list[str]]:
    """(birthday points entries, birthday coupons, greeting delivery keys) of a member."""
    points = await PointsEntry.filter(member_id=member.id,
                                      idempotency_key__startswith="birthday:").values_list(
        "delta", flat=True)
    held = await Coupon.filter(member_id=member.id, source="birthday").count()
    keys = await Delivery.filter(purpose="birthday", key__endswith=f":{member.id}:2031"
                                 ).values_list("key", flat=True)
    return sorted(points), held, keys


async def test_each_tier_gets_its_points_coupon_and_greeting_and_a_second_run_nothing(
        bot, stand_ins):
    plain = await new_member(bot)
    silver = await new_member(bot, tier="银卡会员")
    gold = await new_member(bot, tier="金卡会员")
    diamond = await new_member(bot, tier="钻石会员")

    result = await birthdays.celebrate(bot, DAY)
    # 普通会员's gift holds nothing: a greeting alone, not counted as given.
    assert result == {"members": 4, "given": 3, "greeting_only": 1, "already_given": 0,
                      "points": 1200,
                      "coupons": 2, "coupon_refused": {}, "greeted": 4, "not_greeted": {}}
    assert await gifts_of(plain) == ([], 0, [f"birthday-notice:{plain.id}:2031"])
    assert await gifts_of(silver) == ([100], 0, [f"birthday-notice:{silver.id}:2031"])
    assert await gifts_of(gold) == ([300], 1, [f"birthday-notice:{gold.id}:2031"])
    assert await gifts_of(diamond) == ([800], 1, [f"birthday-notice:{diamond.id}:2031"])
    entry = await PointsEntry.get(member_id=gold.id)
    assert (entry.idempotency_key, entry.kind, entry.reason) == (f"birthday:{gold.id}:2031",
                                                                "earn", "生日积分")
    assert entry.expires_on == dt.date(2032, 5, 20)  # earned points expire after 12 months
    coupon = await Coupon.get(member_id=gold.id).select_related("template")
    assert (coupon.issue_key, coupon.template.code) == (f"birthday-coupon:{gold.id}:2031",
                                                       "BIRTHDAY")
    rows = {row.member_id: row for row in await BirthdayGift.all()}
    assert {m: (r.year, r.celebrated_on, r.tier, r.points, r.coupon_refused)
            for m, r in rows.items()} == {
        plain.id: (2031, DAY, "普通会员", 0, None), silver.id: (2031, DAY, "银卡会员", 100, None),
        gold.id: (2031, DAY, "金卡会员", 300, None), diamond.id: (2031, DAY, "钻石会员", 800, None)}
    assert rows[gold.id].coupon_id == coupon.id and rows[plain.id].coupon_id is None

    # The tier's own template, with the member's name and what arrived.
    [text] = greetings(stand_ins, plain)
    assert text == f"🎂 {plain.name}，生日快乐！示例门店祝您新的一岁顺心如意。"
    [text] = greetings(stand_ins, silver)
    assert text == (f"🎂 {silver.name}，生日快乐！感谢您一直以来对示例门店的支持。\n"
                    "您的生日礼已到账：\n🎁 生日积分 100 分\n回复「积分」或「优惠券」查看。")
    [text] = greetings(stand_ins, gold)
    assert text == (f"🎂 尊敬的金卡会员 {gold.name}，示例门店祝您生日快乐，万事顺意！\n"
                    "您的生日礼已到账：\n🎁 生日积分 300 分\n"
                    "🎁 「生日蛋糕券」（赠送：生日蛋糕一份），2031-06-19 前有效\n"
                    "回复「积分」或「优惠券」查看。")
    [text] = greetings(stand_ins, diamond)
    assert "尊敬的钻石会员" in text and "生日积分 800 分" in text and "生日蛋糕券" in text
    marketing = await Delivery.get(key=f"birthday-notice:{plain.id}:2031")
    assert marketing.status == "sent"  # a gift-less greeting reaches a member who did not opt out

    # Again, later the same day: the gifts are found, the greetings' keys are taken.
    sent = len(stand_ins.wechat.messages)
    again = await birthdays.celebrate(bot, DAY)
    assert again == {"members": 4, "given": 0, "greeting_only": 0, "already_given": 4,
                     "points": 0, "coupons": 0,
                     "coupon_refused": {}, "greeted": 0, "not_greeted": {"duplicate": 4}}
    assert len(stand_ins.wechat.messages) == sent
    assert await gifts_of(gold) == ([300], 1, [f"birthday-notice:{gold.id}:2031"])
    assert (await Member.get(id=gold.id)).points == 300
    for member in (silver, gold, diamond):
        balance, entries, remaining = await loyalty.check_invariant(member.id)
        assert balance == entries == remaining


async def test_members_not_celebrating_today_get_nothing(bot, stand_ins):
    today = await new_member(bot, tier="金卡会员")
    for other in (await new_member(bot, born=(5, 21), tier="金卡会员"),  # tomorrow
                  await new_member(bot, born=(6, 20), tier="金卡会员"),  # same day, other month
                  await new_member(bot, born=None, tier="金卡会员"),  # never said
                  await new_member(bot, tier="金卡会员", erased_at=dt.datetime.now(dt.UTC))):
        result = await birthdays.celebrate(bot, DAY)
        assert result["members"] == 1
        assert await gifts_of(other) == ([], 0, [])
        assert greetings(stand_ins, other) == []
    assert await BirthdayGift.all().values_list("member_id", flat=True) == [today.id]


async def test_a_run_for_a_past_day_skips_members_who_registered_after_it(bot, stand_ins):
    """A rerun for 20 May 2031 made the next day must not greet a member who joined since:
    the day ends at midnight shop time (UTC+8), not UTC."""
    day_ends = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), SHANGHAI)
    that_day = await new_member(bot, tier="银卡会员",
                                registered_at=day_ends - dt.timedelta(seconds=1))
    since = [await new_member(bot, tier="银卡会员", registered_at=day_ends),
             await new_member(bot, tier="银卡会员",
                              registered_at=day_ends + dt.timedelta(hours=2))]
    at_local(bot.clock, DAY + dt.timedelta(days=1), 10)
    result = await birthdays.celebrate(bot, DAY)
    assert (result["members"], result["given"], result["greeted"]) == (1, 1, 1)
    assert await BirthdayGift.all().values_list("member_id", flat=True) == [that_day.id]
    for member in since:
        assert await gifts_of(member) == ([], 0, []) and greetings(stand_ins, member) == []


@pytest.mark.parametrize(("day", "celebrating"), [
    (dt.date(2031, 2, 28), {(2, 28), (2, 29)}),  # 2031 is not a leap year
    (dt.date(2032, 2, 28), {(2, 28)}),
    (dt.date(2032, 2, 29), {(2, 29)}),
    (dt.date(2031, 3, 1), {(3, 1)}),
])
async def test_29_february_is_celebrated_on_28_february_in_other_years(bot, day, celebrating):
    born = {(2, 28), (2, 29), (3, 1)}
    members = {b: await new_member(bot, born=b, tier="银卡会员") for b in born}
    result = await birthdays.celebrate(bot, day)
    assert result["members"] == result["given"] == len(celebrating)
    given = set(await BirthdayGift.all().values_list("member_id", flat=True))
    assert given == {members[b].id for b in celebrating}
    assert set(await BirthdayGift.all().values_list("year", flat=True)) == {day.year}


async def test_a_leap_day_member_is_celebrated_once_a_year_whichever_day_runs(bot):
    """Celebrated on the 28th in 2031 and on the 29th in 2032; the 28th of 2032 is not theirs."""
    leap = await new_member(bot, born=(2, 29), tier="金卡会员")
    await birthdays.celebrate(bot, dt.date(2031, 2, 28))
    result = await birthdays.celebrate(bot, dt.date(2032, 2, 29))
    assert result["given"] == 1
    assert await PointsEntry.filter(member_id=leap.id).values_list(
        "idempotency_key", flat=True) == [f"birthday:{leap.id}:2031", f"birthday:{leap.id}:2032"]
    assert await birthdays.celebrate(bot, dt.date(2032, 2, 28)) == {
        "members": 0, "given": 0, "greeting_only": 0, "already_given": 0, "points": 0,
        "coupons": 0,
        "coupon_refused": {}, "greeted": 0, "not_greeted": {}}


async def test_a_member_who_said_tuiding_gets_the_gift_notice_but_no_giftless_greeting(
        bot, stand_ins):
    opted_out = {"marketing_opt_out_at": dt.datetime.now(dt.UTC)}
    plain = await new_member(bot, **opted_out)
    gold = await new_member(bot, tier="金卡会员", **opted_out)
    result = await birthdays.celebrate(bot, DAY)
    assert result["greeted"] == 1 and result["not_greeted"] == {"opted_out": 1}
    assert greetings(stand_ins, plain) == []
    skipped = await Delivery.get(key=f"birthday-notice:{plain.id}:2031")
    assert skipped.status != "sent" and skipped.error == "opted_out"
    [text] = greetings(stand_ins, gold)  # the gift is owed to them: they are told
    assert "生日礼已到账" in text and "生日积分 300 分" in text
    assert (await BirthdayGift.get(member_id=plain.id)).points == 0


async def test_a_sold_out_coupon_leaves_the_points_and_greeting_and_records_why(bot, stand_ins):
    template = await CouponTemplate.get(code="BIRTHDAY")
    await CouponTemplate.filter(id=template.id).update(stock=1, issued=1)
    gold = await new_member(bot, tier="金卡会员")
    result = await birthdays.celebrate(bot, DAY)
    assert result["coupons"] == 0 and result["coupon_refused"] == {"out_of_stock": 1}
    assert result["points"] == 300 and result["greeted"] == 1
    assert await gifts_of(gold) == ([300], 0, [f"birthday-notice:{gold.id}:2031"])
    gift = await BirthdayGift.get(member_id=gold.id)
    assert (gift.coupon_id, gift.coupon_refused, gift.points) == (None, "out_of_stock", 300)
    [text] = greetings(stand_ins, gold)
    assert "生日积分 300 分" in text and "生日蛋糕券" not in text
    assert (await CouponTemplate.get(id=template.id)).issued == 1


async def test_the_members_coupon_limit_is_recorded_and_the_rest_still_happens(bot, stand_ins):
    await CouponTemplate.filter(code="BIRTHDAY").update(per_member=1)
    gold = await new_member(bot, tier="钻石会员")
    await coupons.issue(bot, gold, await CouponTemplate.get(code="BIRTHDAY"), source="manual",
                        key="earlier")
    result = await birthdays.celebrate(bot, DAY)
    assert result["coupon_refused"] == {"limit": 1} and result["points"] == 800
    assert (await BirthdayGift.get(member_id=gold.id)).coupon_refused == "limit"
    assert await Coupon.filter(member_id=gold.id).count() == 1
    assert "生日积分 800 分" in greetings(stand_ins, gold)[0]


async def test_a_tier_without_gift_whose_coupon_runs_out_greets_as_marketing(bot, stand_ins):
    """With nothing given, the greeting is marketing: a gold member whose coupon ran out and
    whose points were configured away gets no template message and, after 退订, nothing."""
    config = bot.config
    gold = dict(tiers.config_of(config.tiers, "金卡会员").__dict__, birthday_points=0)
    bot.config = config.replace(tiers=[t if t.name != "金卡会员" else type(t)(**gold)
                                       for t in config.tiers])
    await CouponTemplate.filter(code="BIRTHDAY").update(stock=0)
    member = await new_member(bot, tier="金卡会员",
                              marketing_opt_out_at=dt.datetime.now(dt.UTC))
    result = await birthdays.celebrate(bot, DAY)
    assert result["coupon_refused"] == {"out_of_stock": 1}
    assert (result["given"], result["greeting_only"]) == (0, 1)  # it got nothing
    assert result["not_greeted"] == {"opted_out": 1} and greetings(stand_ins, member) == []


async def test_only_a_greeting_with_a_gift_may_go_by_template_message(db_url, stand_ins, clock):
    """Outside the customer-service window the gift notice falls back to the birthday template
    message; a gift-less greeting is marketing and never does (WeChat bans for it)."""
    notices = {**REPO_CONFIG.notices,
               "birthday": {"template_id": "TPL_BDAY",
                            "fields": {"name": "thing1", "points": "number2",
                                       "coupon": "thing3", "date": "date4"}}}
    async with open_bot(make_config(db_url, stand_ins, notices=notices), clock,
                        scheduler=False) as bot:
        plain = await new_member(bot, window=False)
        gold = await new_member(bot, tier="金卡会员", window=False)
        result = await birthdays.celebrate(bot, DAY)
        # (Here: no_window. Which other channel a marketing greeting may take is the outbox's
        # rule; never a template message is this test's.)
        assert result["greeted"] >= 1 and "opted_out" not in result["not_greeted"]
        [sent] = stand_ins.wechat.templates
        assert (sent.openid, sent.template_id) == (openid_of(gold), "TPL_BDAY")
        assert {k: v["value"] for k, v in sent.data.items()} == {
            "thing1": gold.name, "number2": "300", "thing3": "生日蛋糕券", "date4": "2031-05-20"}
        gift = await Delivery.get(key=f"birthday-notice:{gold.id}:2031")
        assert (gift.channel, gift.status) == ("wechat_tpl", "sent")
        greeting = await Delivery.get(key=f"birthday-notice:{plain.id}:2031")
        assert greeting.channel != "wechat_tpl"
        assert stand_ins.wechat.messages == []


async def test_members_are_taken_in_batches_and_every_one_is_reached(bot, stand_ins):
    members = [await new_member(bot, tier="银卡会员") for _ in range(7)]
    await new_member(bot, born=(5, 19))  # in between, on another day
    members.append(await new_member(bot, tier="银卡会员"))
    result = await birthdays.celebrate(bot, DAY, batch=3)
    assert result["members"] == result["given"] == result["greeted"] == 8
    assert sorted(await BirthdayGift.all().values_list("member_id", flat=True)) == \
        [m.id for m in members]


async def test_concurrent_runs_give_each_member_everything_once(any_db, bot, stand_ins):
    members = [await new_member(bot, tier=tier)
               for tier in ("普通会员", "银卡会员", "金卡会员", "钻石会员") * 3]
    results = await asyncio.gather(*(birthdays.celebrate(bot, DAY, batch=5) for _ in range(5)))
    assert sum(r["given"] for r in results) == len(members) - 3  # 3 普通会员: nothing to give
    assert sum(r["greeting_only"] for r in results) == 3
    assert all(r["given"] + r["greeting_only"] + r["already_given"] == len(members)
               for r in results)
    assert sum(r["greeted"] for r in results) == len(members)
    for member in members:
        points, held, keys = await gifts_of(member)
        gift = tiers.config_of(bot.config.tiers, member.tier)
        assert points == ([gift.birthday_points] if gift.birthday_points else [])
        assert held == (1 if gift.birthday_coupon else 0)
        assert len(keys) == 1 and len(greetings(stand_ins, member)) == 1
        balance, entries, remaining = await loyalty.check_invariant(member.id)
        assert balance == entries == remaining == gift.birthday_points
    assert await BirthdayGift.all().count() == len(members)
    assert (await CouponTemplate.get(code="BIRTHDAY")).issued == 6


def test_every_tier_of_the_repo_config_has_a_greeting_that_renders():
    templates = Templates({"shop": REPO_CONFIG.shop, "timedelta": dt.timedelta})
    member = Member(name="王小明", card_no="8800000001", tier="金卡会员")
    names = [t.birthday_template for t in REPO_CONFIG.tiers]
    assert names == ["birthday.j2", "birthday_silver.j2", "birthday_gold.j2",
                     "birthday_diamond.j2"]
    for tier in REPO_CONFIG.tiers:
        text = templates.render(tier.birthday_template, member=member, tier=tier.name,
                                points=0, coupon=None, tz=SHANGHAI)
        assert "王小明" in text and "生日快乐" in text and "None" not in text
        # A member imported without a name is still greeted properly.
        nameless = templates.render(tier.birthday_template, member=Member(name=""),
                                    tier=tier.name, points=0, coupon=None, tz=SHANGHAI)
        assert " ，" not in nameless and not nameless.startswith("🎂 ，"), nameless


async def test_a_gift_cut_short_leaves_nothing_and_the_next_run_gives_it_whole(
        any_db, bot, stand_ins, monkeypatch):
    """The points, the coupon and the gift row are one transaction: a failure while issuing the
    coupon takes the points back too, so the next run gives all of it, once."""
    gold = await new_member(bot, tier="金卡会员")
    real_issue = coupons.issue_in_transaction

    async def lost_connection(*args, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(coupons, "issue_in_transaction", lost_connection)
    with pytest.raises(ConnectionError):
        await birthdays.celebrate(bot, DAY)
    assert await gifts_of(gold) == ([], 0, [])
    assert await BirthdayGift.all().count() == 0
    assert (await Member.get(id=gold.id)).points == 0

    monkeypatch.setattr(coupons, "issue_in_transaction", real_issue)
    result = await birthdays.celebrate(bot, DAY)
    assert (result["given"], result["points"], result["coupons"]) == (1, 300, 1)
    assert await gifts_of(gold) == ([300], 1, [f"birthday-notice:{gold.id}:2031"])
    assert len(greetings(stand_ins, gold)) == 1
