"""Registration, step by step: poster scan → consent → phone → SMS code → name → birthday → card.

Every test talks to the bot over HTTP exactly as WeChat does and then checks the database
(Member, Follower, SmsCode, Conversation, PointsEntry, Delivery rows) and what the SMS stand-in
received, with exact numbers.

Time: the bot's clock is moved with ``h.clock.advance``. Two things have to follow it:

* callbacks are signed with the bot's time (the bot refuses a timestamp more than 300 s off its
  clock, so ``harness.say`` stops working once the clock has moved further than that);
* tortoise's ``auto_now`` timestamps are taken from the same clock. ``Conversation.updated_at``
  is stamped with the wall clock while the "continue or start over?" check compares it with the
  bot's ``now()``; without this, every message after an advance of 30+ minutes looks stale.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import time
from pathlib import Path

import pytest
import tortoise.timezone

from bot.models import (
    CardSerial,
    Conversation,
    Delivery,
    Follower,
    Member,
    PointsEntry,
    SmsCode,
    Store,
)
from bot.rules.cards import card_number, is_valid_card_number
from bot.rules.parsing import normalize_phone, parse_birthday
from bot.sandbox import wechat_client as wire
from bot.services import loyalty
from tests.support import Harness

# What the member sees, one recognisable phrase per template (templates/messages/*.j2).
GREETING = "注册前请阅读《会员隐私政策》"
CONSENT = "请先阅读《会员隐私政策》"
DECLINED = "没有收集您的任何信息"
CANCELLED = "已取消注册"
ASK_PHONE = "请输入您的手机号"
BAD_PHONE = "这好像不是有效的手机号"
PHONE_TAKEN = "已绑定了另一个微信账号"
CODE_SENT = "验证码已发送到"
ASK_CODE = "请回复发送到"
BAD_CODE = "验证码是6位数字"
CODE_WRONG = "验证码不对"
CODE_LOCKED = "输错次数太多"
CODE_EXPIRED = "验证码已过期"
RATE_LIMITED = "验证码发送太频繁了"
SMS_BAD_NUMBER = "这个手机号收不到短信"
SMS_FAILED = "短信暂时发送失败"
ASK_NAME = "请问怎么称呼您"
BAD_NAME = "称呼请用1-20个字"
ASK_BIRTHDAY = "您的生日是哪天"
BAD_BIRTHDAY = "没看懂这个日期"
NO_SUCH_DATE = "这个日期不存在"
IMPLAUSIBLE_BIRTHDAY = "这个生日不太对"
WELCOME = "注册成功"
LINKED = "已找到您在"
RESUME = "您上次的会员注册还没完成"
ALREADY_MEMBER = "已经是我们的会员啦"

STEPS = ["reg.consent", "reg.phone", "reg.code", "reg.name", "reg.birthday"]
STEP_LABELS = {
    "reg.consent": "同意隐私政策",
    "reg.phone": "填写手机号",
    "reg.code": "填写短信验证码",
    "reg.name": "填写称呼",
    "reg.birthday": "填写生日",
}
STEP_QUESTIONS = {
    "reg.consent": CONSENT,
    "reg.phone": ASK_PHONE,
    "reg.code": ASK_CODE,
    "reg.name": ASK_NAME,
    "reg.birthday": ASK_BIRTHDAY,
}
# Rate-limit tests move the clock by hours; this keeps "continue or start over?" out of the way.
NO_RESUME = {"resume_after_minutes": 10**6}

_phones = itertools.count(10_000_001)
_openids = itertools.count(1)
_event_times = itertools.count(int(time.time()))


def new_phone() -> str:
    return f"139{next(_phones):08d}"


def new_openid() -> str:
    return f"o_reg_{next(_openids):04d}"


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
async def make(harness_factory, monkeypatch):
    """A harness whose database timestamps (auto_now) follow the bot's clock."""

    async def build(**overrides) -> Harness:
        harness = await harness_factory(**overrides)
        monkeypatch.setattr(tortoise.timezone, "now", harness.clock)
        return harness

    return build


@pytest.fixture
async def h(make) -> Harness:
    return await make()


async def post(h: Harness, xml: str) -> dict | None:
    """One callback, signed with the bot's time (so it still gets in after clock.advance)."""
    signed = h.simulator.sign(xml, timestamp=int(h.clock().timestamp()))
    async with h.session.post(h.url, params=signed.params, data=signed.body) as response:
        body = await response.read()
        assert response.status == 200, body
    return h.simulator.read_reply(body, signed.params)


async def say(h: Harness, openid: str, text: str) -> str:
    reply = await post(h, wire.text(openid, text))
    assert reply is not None, f"no reply to {text!r}"
    return reply["Content"]


async def event(h: Harness, openid: str, name: str, key: str | None = None) -> str | None:
    # Events are deduplicated by FromUserName + CreateTime: give every one its own second.
    reply = await post(h, wire.event(openid, name, key, create_time=next(_event_times)))
    return reply["Content"] if reply else None


async def subscribe(h: Harness, openid: str, scene: str | None = "store:S001") -> str:
    reply = await event(h, openid, "subscribe", f"qrscene_{scene}" if scene else "")
    assert reply is not None
    return reply


def verify_sms(h: Harness, phone: str | None = None) -> list[dict]:
    return [m for m in h.stand_ins.sms.messages if m["template_code"] == "SMS_VERIFY"
            and (phone is None or m["phone"] == phone)]


def welcome_sms(h: Harness) -> list[dict]:
    return [m for m in h.stand_ins.sms.messages if m["template_code"] == "SMS_WELCOME"]


def last_code(h: Harness, phone: str) -> str:
    codes = h.sms_codes(phone)
    assert codes, f"no code was sent to {phone}"
    return codes[-1]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def conversation(openid: str) -> Conversation | None:
    return await Conversation.get_or_none(user=f"wechat:{openid}")


async def state(openid: str) -> str | None:
    row = await conversation(openid)
    return row.state if row else None


async def reach(h: Harness, openid: str, step: str, phone: str | None = None, *,
                name: str = "王小明", scene: str | None = "store:S001") -> None:
    """Walk a new follower's dialog up to (not through) `step`."""
    await subscribe(h, openid, scene)
    if step != "reg.consent":
        assert ASK_PHONE in await say(h, openid, "同意")
    if step not in ("reg.consent", "reg.phone"):
        assert CODE_SENT in await say(h, openid, phone)
    if step in ("reg.name", "reg.birthday"):
        assert ASK_NAME in await say(h, openid, last_code(h, phone))
    if step == "reg.birthday":
        assert ASK_BIRTHDAY in await say(h, openid, name)
    assert await state(openid) == step


async def register(h: Harness, openid: str, phone: str, *, name: str = "王小明",
                   birthday: str = "跳过", scene: str | None = "store:S001") -> Member:
    await reach(h, openid, "reg.birthday", phone, name=name, scene=scene)
    reply = await say(h, openid, birthday)
    assert WELCOME in reply, reply
    return await Member.get(follower__openid=openid)


async def assert_nothing_saved(openid: str) -> None:
    assert await conversation(openid) is None
    assert await Member.all().count() == 0
    assert await PointsEntry.all().count() == 0
    follower = await Follower.get(openid=openid)
    assert follower.member_id is None


# --- the whole journey --------------------------------------------------------------------------


async def test_new_customer_joins_from_poster(make):
    h = await make(shop={"welcome_points": 250, "privacy_url": "https://shop.test/privacy-v2"})
    openid, phone = new_openid(), new_phone()

    greeting = await subscribe(h, openid, "store:S001")
    assert "欢迎关注" in greeting and GREETING in greeting
    assert "https://shop.test/privacy-v2" in greeting and "同意" in greeting
    assert await state(openid) == "reg.consent"
    follower = await Follower.get(openid=openid)
    assert follower.following and follower.scene == "store:S001" and follower.member_id is None

    assert ASK_PHONE in await say(h, openid, "同意")
    row = await conversation(openid)
    assert row.state == "reg.phone" and "consent_at" in row.data

    sent = await say(h, openid, phone)
    assert f"{CODE_SENT} {masked(phone)}，5分钟内有效" in sent
    assert len(verify_sms(h, phone)) == 1
    code_row = await SmsCode.get(phone_hash=h.bot.vault.lookup_hash(phone))
    assert (code_row.user, code_row.purpose, code_row.status, code_row.attempts) == (
        openid, "register", "active", 0)
    ttl = code_row.expires_at - h.clock()
    assert dt.timedelta(minutes=4, seconds=50) < ttl <= dt.timedelta(minutes=5)

    assert ASK_NAME in await say(h, openid, last_code(h, phone))
    assert (await SmsCode.get(id=code_row.id)).status == "used"
    row = await conversation(openid)
    assert row.state == "reg.name" and row.data["verified"] is True

    ask_birthday = await say(h, openid, "王小明")
    assert ask_birthday.startswith("王小明，") and ASK_BIRTHDAY in ask_birthday

    welcome = await say(h, openid, "1990-05-01")
    member = await Member.get(follower__openid=openid)
    assert WELCOME in welcome and f"会员卡号：{member.card_no}" in welcome
    assert "已赠送欢迎积分 250 分" in welcome and "生日：1990年5月1日" in welcome

    assert member.name == "王小明"
    assert (member.birth_year, member.birth_month, member.birth_day) == (1990, 5, 1)
    assert (await member.store).code == "S001"
    assert member.staff_ref is None and member.referrer_id is None
    assert member.tier == "普通会员" and member.points == 250
    assert member.privacy_consent_at is not None
    assert member.phone_hash == h.bot.vault.lookup_hash(phone)
    assert h.bot.vault.decrypt(member.phone_enc) == phone
    assert is_valid_card_number(member.card_no) and member.card_no.startswith("88")
    entries = await PointsEntry.filter(member=member).values("delta", "kind", "balance_after")
    assert entries == [{"delta": 250, "kind": "earn", "balance_after": 250}]
    assert (await Follower.get(openid=openid)).member_id == member.id
    assert await conversation(openid) is None
    assert await Member.all().count() == 1

    await h.bot.drain(5)
    assert [(m["phone"], m["params"]) for m in welcome_sms(h)] == [
        (phone, {"name": "王小明", "card_no": member.card_no})]
    delivery = await Delivery.get(purpose="welcome")
    assert delivery.status == "sent" and delivery.phone_hash == member.phone_hash


async def test_menu_join_starts_registration_and_members_are_told_they_are_members(h):
    openid = new_openid()
    await subscribe(h, openid, None)
    assert CANCELLED in await say(h, openid, "取消")
    assert GREETING in await event(h, openid, "CLICK", "JOIN")
    assert await state(openid) == "reg.consent"
    assert CANCELLED in await say(h, openid, "取消")
    assert GREETING in await say(h, openid, "注册")

    member = await register(h, new_openid(), new_phone())
    reply = await event(h, (await member.follower).openid, "CLICK", "JOIN")
    assert ALREADY_MEMBER in reply and member.card_no in reply


# --- scenes: who brought the member in ----------------------------------------------------------


async def test_store_staff_and_referral_scenes_are_recorded(h):
    first = await register(h, new_openid(), new_phone(), scene="store:S002")
    assert (await first.store).code == "S002"

    referred = await register(h, new_openid(), new_phone(), scene=f"ref:{first.card_no}")
    assert referred.referrer_id == first.id
    assert (await referred.store).code == "S002"  # the referrer's store
    assert referred.staff_ref is None

    by_staff = await register(h, new_openid(), new_phone(), scene="staff:7")
    assert by_staff.staff_ref == "7" and by_staff.referrer_id is None
    assert (await by_staff.store).code == "S001"  # no store in the scene: the first store

    unknown_ref = await register(h, new_openid(), new_phone(), scene="ref:8800009999")
    assert unknown_ref.referrer_id is None and (await unknown_ref.store).code == "S001"

    assert await Member.filter(referrer_id=first.id).count() == 1
    assert await Member.all().count() == 4


async def test_scan_by_existing_follower_starts_registration_with_its_scene(h):
    openid, phone = new_openid(), new_phone()
    await subscribe(h, openid, None)
    assert CANCELLED in await say(h, openid, "取消")
    assert await conversation(openid) is None

    reply = await event(h, openid, "SCAN", "store:S002")  # SCAN carries the bare scene
    assert GREETING in reply
    assert await state(openid) == "reg.consent"
    assert (await Follower.get(openid=openid)).scene == "store:S002"

    await say(h, openid, "同意")
    await say(h, openid, phone)
    await say(h, openid, last_code(h, phone))
    await say(h, openid, "小李")
    assert WELCOME in await say(h, openid, "跳过")
    member = await Member.get(follower__openid=openid)
    assert (await member.store).code == "S002"


async def test_scan_by_member_says_already_member_and_starts_nothing(h):
    member = await register(h, "o_member_scan", new_phone())
    reply = await event(h, "o_member_scan", "SCAN", "ref:8800000018")
    assert ALREADY_MEMBER in reply and member.card_no in reply
    assert await conversation("o_member_scan") is None
    assert await Member.all().count() == 1
    assert (await Member.get(id=member.id)).referrer_id is None


# --- consent ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["不同意", "拒绝"])
async def test_declining_saves_nothing(h, answer):
    openid = new_openid()
    await reach(h, openid, "reg.consent")
    assert DECLINED in await say(h, openid, answer)
    await assert_nothing_saved(openid)
    # Outside the dialog a phone number is not taken as an answer.
    await say(h, openid, new_phone())
    assert await conversation(openid) is None and not verify_sms(h)


async def test_unclear_consent_repeats_the_privacy_notice(make):
    h = await make(shop={"privacy_url": "https://shop.test/p"})
    openid = new_openid()
    await reach(h, openid, "reg.consent")
    for unclear in ("嗯？", "13912345678", "ok"):
        reply = await say(h, openid, unclear)
        assert CONSENT in reply and "https://shop.test/p" in reply
        assert await state(openid) == "reg.consent"
    assert not verify_sms(h)
    assert ASK_PHONE in await say(h, openid, "好的")


# --- 取消 at every step --------------------------------------------------------------------------


@pytest.mark.parametrize("step", [*STEPS, "reg.resume"])
async def test_cancel_at_every_step_saves_nothing(h, step):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.name" if step == "reg.resume" else step, phone)
    if step == "reg.resume":
        h.clock.advance(minutes=31)
        assert RESUME in await say(h, openid, "我回来了")
        assert await state(openid) == "reg.resume"
    assert CANCELLED in await say(h, openid, "取消")
    await assert_nothing_saved(openid)
    # What would have been the next answer is no longer taken as one.
    await say(h, openid, "王小明")
    await say(h, openid, "跳过")
    await assert_nothing_saved(openid)


@pytest.mark.parametrize("word", ["退出", "算了"])
async def test_cancel_synonyms(h, word):
    openid = new_openid()
    await reach(h, openid, "reg.phone")
    assert CANCELLED in await say(h, openid, word)
    await assert_nothing_saved(openid)


# --- coming back later: continue or start over --------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
async def test_coming_back_after_idle_offers_to_continue_at_same_step(h, step):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, step, phone)
    h.clock.advance(minutes=31)

    offer = await say(h, openid, "在吗")
    assert RESUME in offer and f"（进行到：{STEP_LABELS[step]}）" in offer
    assert await state(openid) == "reg.resume"
    assert RESUME in await say(h, openid, "嗯")  # unclear: asked again
    assert await state(openid) == "reg.resume"

    question = await say(h, openid, "继续")
    assert STEP_QUESTIONS[step] in question
    if step == "reg.code":
        assert masked(phone) in question
    assert await state(openid) == step

    # ...and the dialog carries on from there, with what was answered before.
    if step == "reg.consent":
        assert ASK_PHONE in await say(h, openid, "同意")
    elif step == "reg.phone":
        assert CODE_SENT in await say(h, openid, phone)
    elif step == "reg.code":
        assert CODE_EXPIRED in await say(h, openid, last_code(h, phone))  # 31 min > 5 min
        assert CODE_SENT in await say(h, openid, "重发")
        assert ASK_NAME in await say(h, openid, last_code(h, phone))
    elif step == "reg.name":
        assert ASK_BIRTHDAY in await say(h, openid, "小李")
    else:
        assert WELCOME in await say(h, openid, "1990-05-01")
        member = await Member.get(follower__openid=openid)
        assert member.name == "王小明" and member.phone_hash == h.bot.vault.lookup_hash(phone)


@pytest.mark.parametrize("step", ["reg.code", "reg.birthday"])
async def test_start_over_after_idle_restarts_at_consent(h, step):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, step, phone)
    h.clock.advance(minutes=45)
    assert RESUME in await say(h, openid, "你好")
    assert GREETING in await say(h, openid, "重新开始")
    row = await conversation(openid)
    assert row.state == "reg.consent" and row.data == {}  # no phone, not verified
    await say(h, openid, "同意")
    assert await state(openid) == "reg.phone"
    assert await Member.all().count() == 0


async def test_no_resume_question_within_the_idle_limit(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.phone")
    h.clock.advance(minutes=29)
    assert CODE_SENT in await say(h, openid, phone)
    h.clock.advance(minutes=4)
    assert ASK_NAME in await say(h, openid, last_code(h, phone))


# --- phone --------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, normalized", [
    ("13912340001", "13912340001"),
    ("+86 139 1234 0002", "13912340002"),
    ("86-139-1234-0003", "13912340003"),
    ("0086 13912340004", "13912340004"),
    ("139 1234 0005", "13912340005"),
    ("139-1234-0006", "13912340006"),
    ("１３９１２３４０００７", "13912340007"),  # full-width digits from a Chinese IME
    ("＋８６ １３９－１２３４－０００８", "13912340008"),
    ("(139)1234-0009", "13912340009"),
    ("15012340010", "15012340010"),
])
async def test_accepted_phone_formats(h, typed, normalized):
    openid = new_openid()
    await reach(h, openid, "reg.phone")
    reply = await say(h, openid, typed)
    assert f"{CODE_SENT} {masked(normalized)}" in reply
    assert [m["phone"] for m in verify_sms(h)] == [normalized]
    await say(h, openid, last_code(h, normalized))
    await say(h, openid, "王小明")
    assert WELCOME in await say(h, openid, "跳过")
    member = await Member.get(follower__openid=openid)
    assert member.phone_hash == h.bot.vault.lookup_hash(normalized)
    assert h.bot.vault.decrypt(member.phone_enc) == normalized


async def test_invalid_phone_numbers_get_an_example_and_no_sms(h):
    openid = new_openid()
    await reach(h, openid, "reg.phone")
    for bad in ("12345678901", "12912345678", "1391234567", "139123456789", "23912345678",
                "010-12345678", "+1 415 555 0100", "8513912345678", "139 1234 567a", "手机号",
                "+86 1391234567"):
        reply = await say(h, openid, bad)
        assert BAD_PHONE in reply and "例如：13800138000" in reply, bad
        assert await state(openid) == "reg.phone"
    assert not verify_sms(h)
    assert await SmsCode.all().count() == 0
    assert "phone" not in (await conversation(openid)).data


@pytest.mark.parametrize("typed, expected", [
    ("+86 138 0013 8000", "13800138000"),
    ("8613800138000", "13800138000"),
    ("138-0013-8000", "13800138000"),
    ("１３８００１３８０００", "13800138000"),
    ("12800138000", None),
    ("1380013800", None),
    ("+86 1380013800", None),
    ("86138001380001", None),
    ("", None),
])
def test_normalize_phone(typed, expected):
    assert normalize_phone(typed) == expected


async def test_the_phone_step_answers_a_members_number_like_anyone_elses(h):
    """Nobody learns whether a number is a member's without its SMS code: the answer at the
    phone step is the same, and the "bound to another account" comes only after the code."""
    members_phone, strangers_phone = new_phone(), new_phone()
    await register(h, "o_owner", members_phone)
    h.clock.advance(seconds=61)  # registration just sent this phone a code

    intruder, stranger = new_openid(), new_openid()
    await reach(h, intruder, "reg.phone")
    await reach(h, stranger, "reg.phone")
    to_member = await say(h, intruder, members_phone)
    to_stranger = await say(h, stranger, strangers_phone)
    assert to_member.replace(masked(members_phone), "#") == \
        to_stranger.replace(masked(strangers_phone), "#")
    assert CODE_SENT in to_member and PHONE_TAKEN not in to_member
    assert await state(intruder) == await state(stranger) == "reg.code"
    # The code goes out under the same limits as any other (one a minute per phone).
    assert len(verify_sms(h, members_phone)) == 2
    assert RATE_LIMITED in await say(h, intruder, "重发")

    # A wrong code learns nothing either; nothing was bound.
    assert CODE_WRONG in await say(h, intruder, wrong(last_code(h, members_phone)))
    assert (await Follower.get(openid=intruder)).member_id is None

    # With the code (whoever holds the phone): now it is said, masked, with the way forward.
    reply = await say(h, intruder, last_code(h, members_phone))
    assert PHONE_TAKEN in reply and masked(members_phone) in reply and members_phone not in reply
    assert "换绑" in reply
    assert await state(intruder) is None
    assert await Member.all().count() == 1
    assert (await Follower.get(openid=intruder)).member_id is None
    assert (await Follower.get(openid="o_owner")).member_id is not None


async def test_member_without_wechat_is_linked_after_the_code(h):
    phone = new_phone()
    s002 = await Store.get(code="S002")
    serial = await CardSerial.create()
    imported = await Member.create(
        card_no=card_number(h.config.shop.card_prefix, serial.id),
        phone_hash=h.bot.vault.lookup_hash(phone), phone_enc=h.bot.vault.encrypt(phone),
        name="老顾客", store=s002, tier=h.config.tiers[0].name,
    )
    await loyalty.post_points(imported.id, 520, kind="adjust", reason="导入",
                              key=f"import:{imported.id}")

    openid = new_openid()
    await reach(h, openid, "reg.phone")
    assert CODE_SENT in await say(h, openid, phone)
    assert (await Follower.get(openid=openid)).member_id is None  # not before the code
    reply = await say(h, openid, last_code(h, phone))
    assert LINKED in reply
    assert f"会员卡号：{imported.card_no}" in reply and "当前积分：520" in reply

    assert (await Follower.get(openid=openid)).member_id == imported.id
    member = await Member.get(id=imported.id)
    assert (member.card_no, member.points, member.name) == (imported.card_no, 520, "老顾客")
    assert (await member.store).code == "S002"
    assert await Member.all().count() == 1
    assert await PointsEntry.filter(member=member).count() == 1  # no welcome points
    assert await conversation(openid) is None
    await h.bot.drain(5)
    assert welcome_sms(h) == []
    card = await say(h, openid, "积分")
    assert imported.card_no in card and "积分：520" in card


# --- SMS code -----------------------------------------------------------------------------------


async def test_code_is_stored_hashed_and_never_in_the_delivery_payload(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.code", phone)
    code = last_code(h, phone)
    assert len(code) == 6 and code.isdigit()
    for row in await SmsCode.all().values():
        assert not any(code in str(value) for value in row.values()), row
        assert len(row["code_hash"]) == 64
    deliveries = await Delivery.filter(purpose="verify_code").values("payload", "phone_hash")
    assert deliveries == [{"payload": {"template": "SMS_VERIFY", "params": "(secret)"},
                           "phone_hash": h.bot.vault.lookup_hash(phone)}]
    for row in await Delivery.all().values():
        assert code not in json.dumps(row, default=str, ensure_ascii=False)
    assert code not in json.dumps((await conversation(openid)).data)


async def test_code_with_spaces_or_full_width_digits_is_accepted(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.code", phone)
    code = last_code(h, phone)
    full_width = str.maketrans("0123456789", "０１２３４５６７８９")
    typed = f"{code[:3]} {code[3:]}".translate(full_width)
    assert ASK_NAME in await say(h, openid, typed)


async def test_malformed_code_is_not_counted_as_a_try(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.code", phone)
    for bad in ("12345", "1234567", "abcdef", "验证码"):
        assert BAD_CODE in await say(h, openid, bad)
    row = await SmsCode.get(user=openid)
    assert (row.attempts, row.status) == (0, "active")
    assert ASK_NAME in await say(h, openid, last_code(h, phone))


async def test_five_wrong_tries_void_the_code_and_resend_gives_a_new_one(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.code", phone)
    code = last_code(h, phone)
    for left in (4, 3, 2, 1):
        assert f"{CODE_WRONG}，还可以再试 {left} 次" in await say(h, openid, wrong(code))
    assert CODE_LOCKED in await say(h, openid, wrong(code))
    assert CODE_LOCKED in await say(h, openid, code)  # even the right code, now
    row = await SmsCode.get(user=openid)
    assert (row.attempts, row.status) == (5, "void")
    assert await state(openid) == "reg.code"
    assert (await Follower.get(openid=openid)).member_id is None

    h.clock.advance(seconds=61)
    assert CODE_SENT in await say(h, openid, "重发")
    new_code = last_code(h, phone)
    assert len(h.sms_codes(phone)) == 2
    assert ASK_NAME in await say(h, openid, new_code)
    assert await SmsCode.filter(user=openid).order_by("id").values_list("status", flat=True) == [
        "void", "used"]


async def test_code_is_valid_five_minutes(h):
    early, late = new_openid(), new_openid()
    early_phone, late_phone = new_phone(), new_phone()
    await reach(h, early, "reg.code", early_phone)
    h.clock.advance(minutes=4, seconds=50)
    assert ASK_NAME in await say(h, early, last_code(h, early_phone))

    await reach(h, late, "reg.code", late_phone)
    h.clock.advance(minutes=6)
    assert CODE_EXPIRED in await say(h, late, last_code(h, late_phone))
    assert CODE_EXPIRED in await say(h, late, last_code(h, late_phone))
    assert await state(late) == "reg.code"
    assert CODE_SENT in await say(h, late, "重发")
    assert len(h.sms_codes(late_phone)) == 2
    assert ASK_NAME in await say(h, late, last_code(h, late_phone))


async def test_resend_replaces_the_previous_code(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.code", phone)
    first = last_code(h, phone)
    h.clock.advance(seconds=61)
    assert f"{CODE_SENT} {masked(phone)}" in await say(h, openid, "没收到")
    second = last_code(h, phone)
    assert len(h.sms_codes(phone)) == 2
    if first != second:
        assert CODE_WRONG in await say(h, openid, first)
    assert ASK_NAME in await say(h, openid, second)
    statuses = await SmsCode.filter(user=openid).order_by("id").values_list("status", flat=True)
    assert statuses == ["void", "used"]


async def test_change_phone_goes_back_to_the_phone_step(h):
    openid, old_phone, new = new_openid(), new_phone(), new_phone()
    await reach(h, openid, "reg.code", old_phone)
    old_code = last_code(h, old_phone)
    assert ASK_PHONE in await say(h, openid, "换号")
    assert await state(openid) == "reg.phone"
    h.clock.advance(seconds=61)
    assert f"{CODE_SENT} {masked(new)}" in await say(h, openid, new)
    if old_code != last_code(h, new):
        assert CODE_WRONG in await say(h, openid, old_code)
    assert ASK_NAME in await say(h, openid, last_code(h, new))
    await say(h, openid, "王小明")
    await say(h, openid, "跳过")
    member = await Member.get(follower__openid=openid)
    assert member.phone_hash == h.bot.vault.lookup_hash(new)


# --- how often a code may be sent ---------------------------------------------------------------


async def test_one_phone_one_account_minute_hour_and_day_limits(make):
    h = await make(shop=NO_RESUME)
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.phone")
    assert CODE_SENT in await say(h, openid, phone)

    limited = await say(h, openid, "重发")  # within the minute
    assert RATE_LIMITED in limited and "秒后再试" in limited
    assert len(h.sms_codes(phone)) == 1

    for _ in range(4):
        h.clock.advance(seconds=61)
        assert CODE_SENT in await say(h, openid, "重发")
    assert len(h.sms_codes(phone)) == 5

    h.clock.advance(seconds=61)  # 5 in the last hour
    limited = await say(h, openid, "重发")
    assert RATE_LIMITED in limited and "分钟后再试" in limited
    assert len(h.sms_codes(phone)) == 5

    h.clock.advance(minutes=55)  # the first send is now more than an hour old
    for _ in range(5):
        assert CODE_SENT in await say(h, openid, "重发")
        h.clock.advance(seconds=61)
    assert len(h.sms_codes(phone)) == 10

    h.clock.advance(hours=1)  # the hour has room again, the day does not
    limited = await say(h, openid, "重发")
    assert RATE_LIMITED in limited and "稍后再试" in limited
    assert len(h.sms_codes(phone)) == 10

    h.clock.advance(hours=22)  # a day after the first send
    assert CODE_SENT in await say(h, openid, "重发")
    assert len(h.sms_codes(phone)) == 11
    assert ASK_NAME in await say(h, openid, last_code(h, phone))


async def test_two_accounts_hammering_one_phone_share_its_limit(make):
    h = await make(shop=NO_RESUME)
    phone = new_phone()
    first, second = new_openid(), new_openid()
    await reach(h, first, "reg.phone")
    await reach(h, second, "reg.phone")

    async def ask(openid: str) -> str:
        return await say(h, openid, phone if await state(openid) == "reg.phone" else "重发")

    assert CODE_SENT in await ask(first)
    assert RATE_LIMITED in await ask(second)  # same phone, same minute
    replies = []
    for round_ in range(8):
        h.clock.advance(seconds=61)
        replies.append(await ask(second if round_ % 2 == 0 else first))
    assert [CODE_SENT in r for r in replies] == [True] * 4 + [False] * 4
    assert all(RATE_LIMITED in r and "分钟后再试" in r for r in replies[4:])
    assert len(h.sms_codes(phone)) == 5
    assert await SmsCode.filter(user=first).count() == 3
    assert await SmsCode.filter(user=second).count() == 2


async def test_one_account_trying_many_phones_is_limited_per_account(make):
    h = await make(shop=NO_RESUME)
    openid = new_openid()
    phones = [new_phone() for _ in range(12)]
    await reach(h, openid, "reg.phone")

    async def try_phone(phone: str) -> str:
        if await state(openid) == "reg.code":
            assert ASK_PHONE in await say(h, openid, "换号")
        return await say(h, openid, phone)

    for index, phone in enumerate(phones[:5]):
        if index:
            h.clock.advance(seconds=61)
        assert CODE_SENT in await try_phone(phone)
    assert RATE_LIMITED in await try_phone(phones[5])  # same minute
    h.clock.advance(seconds=61)
    assert RATE_LIMITED in await try_phone(phones[5])  # 5 this hour
    assert len(verify_sms(h)) == 5

    h.clock.advance(minutes=55)
    for phone in phones[5:10]:
        assert CODE_SENT in await try_phone(phone)
        h.clock.advance(seconds=61)
    h.clock.advance(hours=1)
    limited = await try_phone(phones[10])  # 10 today
    assert RATE_LIMITED in limited
    assert [m["phone"] for m in verify_sms(h)] == phones[:10]
    assert h.sms_codes(phones[10]) == []

    h.clock.advance(hours=23)
    assert CODE_SENT in await try_phone(phones[11])
    assert len(verify_sms(h)) == 11


# --- when Aliyun says no ------------------------------------------------------------------------


async def test_sms_number_illegal_asks_for_another_number(h):
    openid, phone, other = new_openid(), new_phone(), new_phone()
    await reach(h, openid, "reg.phone")
    h.stand_ins.sms.fail_next(code="isv.MOBILE_NUMBER_ILLEGAL")
    reply = await say(h, openid, phone)
    assert SMS_BAD_NUMBER in reply
    assert await state(openid) == "reg.phone"
    assert verify_sms(h) == []
    assert await SmsCode.filter(user=openid).values_list("status", flat=True) == ["void"]
    assert await Delivery.filter(purpose="verify_code").values_list("status", "error") == [
        ("failed", "isv.MOBILE_NUMBER_ILLEGAL")]
    h.clock.advance(seconds=61)
    assert CODE_SENT in await say(h, openid, other)
    assert ASK_NAME in await say(h, openid, last_code(h, other))


async def test_sms_flow_control_says_too_frequent(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.phone")
    h.stand_ins.sms.fail_next(code="isv.BUSINESS_LIMIT_CONTROL")
    reply = await say(h, openid, phone)
    assert RATE_LIMITED in reply
    assert "请稍后再试" in reply  # and not "请稍后后再试"
    assert await state(openid) == "reg.phone"
    assert verify_sms(h) == []


async def test_sms_failure_then_resend_sends_the_code(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.phone")
    h.stand_ins.sms.fail_next(status=500)
    reply = await say(h, openid, phone)
    assert SMS_FAILED in reply and "重发" in reply
    h.clock.advance(seconds=61)
    # The member does what the message says.
    assert f"{CODE_SENT} {masked(phone)}" in await say(h, openid, "重发")
    assert ASK_NAME in await say(h, openid, last_code(h, phone))


# --- name ---------------------------------------------------------------------------------------


async def test_unclear_names_repeat_the_question(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.name", phone)
    for bad in ("12345", "🙂🙂", "王" * 21, "<b>王</b>", "　"):
        assert BAD_NAME in await say(h, openid, bad), bad
        assert await state(openid) == "reg.name"
    assert "Anna-Lee，" in await say(h, openid, "Anna-Lee")
    await say(h, openid, "跳过")
    assert (await Member.get(follower__openid=openid)).name == "Anna-Lee"


# --- birthday -----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, stored, shown", [
    ("1990-05-01", (1990, 5, 1), "1990年5月1日"),
    ("1990/5/1", (1990, 5, 1), "1990年5月1日"),
    ("19900501", (1990, 5, 1), "1990年5月1日"),
    ("1990年5月1日", (1990, 5, 1), "1990年5月1日"),
    ("１９９０－０５－０１", (1990, 5, 1), "1990年5月1日"),
    ("5月1日", (None, 5, 1), "5月1日"),
    ("0501", (None, 5, 1), "5月1日"),
    ("05-01", (None, 5, 1), "5月1日"),
    ("12月31日", (None, 12, 31), "12月31日"),
    ("2月29日", (None, 2, 29), "2月29日"),
    ("2000-02-29", (2000, 2, 29), "2000年2月29日"),
])
async def test_accepted_birthdays(h, typed, stored, shown):
    openid = new_openid()
    await reach(h, openid, "reg.birthday", new_phone())
    reply = await say(h, openid, typed)
    assert WELCOME in reply and f"生日：{shown}" in reply
    member = await Member.get(follower__openid=openid)
    assert (member.birth_year, member.birth_month, member.birth_day) == stored


async def test_skipping_the_birthday(h):
    member = await register(h, new_openid(), new_phone(), birthday="跳过")
    assert (member.birth_year, member.birth_month, member.birth_day) == (None, None, None)


async def test_impossible_birthdays_are_refused_with_an_example(h):
    openid = new_openid()
    await reach(h, openid, "reg.birthday", new_phone())
    today = h.bot.today()
    tomorrow = today + dt.timedelta(days=1)
    # Each refusal says what is wrong: a date that does not exist is not a format problem.
    refusals = {
        NO_SUCH_DATE: ("2月30日", "1990-13-01", "1990-02-29", "0230", "13月1日", "19900532"),
        IMPLAUSIBLE_BIRTHDAY: ("1800-01-01", f"{tomorrow:%Y-%m-%d}", f"{today.year + 1}-01-01"),
        BAD_BIRTHDAY: ("1990-05", "明天", "5月"),
    }
    for expected, typed in refusals.items():
        for bad in typed:
            reply = await say(h, openid, bad)
            assert expected in reply and "1990-05-01" in reply, bad
            assert not any(other in reply for other in refusals if other != expected), bad
            assert await state(openid) == "reg.birthday"
    assert await Member.all().count() == 0
    assert WELCOME in await say(h, openid, f"{today:%Y-%m-%d}")  # born today is fine


def test_parse_birthday_against_a_fixed_today():
    today = dt.date(2024, 6, 15)
    assert parse_birthday("2024-06-15", today) is not None
    assert parse_birthday("2024-06-16", today) is None
    assert parse_birthday("1904-01-01", today) is not None
    assert parse_birthday("1903-12-31", today) is None


# --- card numbers -------------------------------------------------------------------------------


def _luhn_ok(number: str) -> bool:
    """Textbook Luhn over the whole number, independent of bot.rules.cards."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char) * (2 if index % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


async def test_twenty_members_get_unique_valid_card_numbers(h):
    for _ in range(20):
        await register(h, new_openid(), new_phone())
    cards = await Member.all().values_list("card_no", flat=True)
    assert len(cards) == len(set(cards)) == 20
    for card in cards:
        assert card.startswith("88") and len(card) == 10 and card.isdigit()
        assert is_valid_card_number(card) and _luhn_ok(card), card
        corrupted = card[:-2] + str((int(card[-2]) + 1) % 10) + card[-1]
        assert not is_valid_card_number(corrupted)
    assert await PointsEntry.all().count() == 20
    await h.bot.drain(5)
    assert sorted(m["params"]["card_no"] for m in welcome_sms(h)) == sorted(cards)


# --- phone numbers and codes at rest, in dialogs and in logs ------------------------------------


async def _everything_stored(url: str) -> bytes:
    """Every byte the database holds: the SQLite files, or every row of every PostgreSQL table."""
    if url.startswith("sqlite://"):
        db_path = Path(url.removeprefix("sqlite://"))
        return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    from tortoise import connections

    conn = connections.get("default")
    tables = await conn.execute_query_dict(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    dump = []
    for table in tables:
        rows = await conn.execute_query_dict(
            f'SELECT row_to_json(t)::text AS row FROM "{table["table_name"]}" t')
        dump.extend(row["row"] for row in rows)
    return "\n".join(dump).encode()


async def test_phone_never_stored_or_logged_in_clear(h, caplog):
    caplog.set_level(logging.DEBUG)
    openid, phone = new_openid(), new_phone()
    spaced = f"{phone[:3]} {phone[3:7]} {phone[7:]}"

    async def dialog_keeps_phone_sealed(expected_state: str) -> None:
        row = await conversation(openid)
        assert row.state == expected_state
        dumped = json.dumps(row.data, ensure_ascii=False)
        assert phone not in dumped and spaced not in dumped
        assert h.bot.vault.decrypt(row.data["phone"]) == phone

    await reach(h, openid, "reg.phone")
    await say(h, openid, spaced)
    await dialog_keeps_phone_sealed("reg.code")
    codes = [last_code(h, phone)]
    assert CODE_WRONG in await say(h, openid, wrong(codes[0]))
    await say(h, openid, codes[0])
    await dialog_keeps_phone_sealed("reg.name")
    await say(h, openid, "王小明")
    await dialog_keeps_phone_sealed("reg.birthday")
    assert WELCOME in await say(h, openid, "1990-05-01")
    # Someone else trying the same number, in another format, and proving its code.
    other = new_openid()
    await reach(h, other, "reg.phone")
    h.clock.advance(seconds=61)
    assert CODE_SENT in await say(h, other, f"+86{phone}")
    codes.append(last_code(h, phone))
    assert PHONE_TAKEN in await say(h, other, codes[-1])
    await h.bot.drain(5)

    member = await Member.get(follower__openid=openid)
    assert phone not in member.phone_enc
    assert h.bot.vault.decrypt(member.phone_enc) == phone

    raw = await _everything_stored(h.config.database.url)
    assert len(raw) > 0
    for needle in (phone, spaced, f"+86{phone}"):
        assert needle.encode() not in raw, needle
    for row in await SmsCode.all().values():
        assert not any(code in str(value) for code in codes for value in row.values())

    def from_stand_in(record: logging.LogRecord) -> bool:
        # The Aliyun stand-in plays the member's handset: it shows the code by design, and its
        # HTTP access log has the SendSms query string. Neither is the bot's log.
        if record.name.startswith("memberbot.sandbox"):
            return True
        return record.name == "aiohttp.access" and "/wechat" not in record.getMessage()

    bot_records = [r for r in caplog.records if not from_stand_in(r)]
    assert any(r.name.startswith("memberbot") for r in bot_records)
    for record in bot_records:
        text = record.getMessage() + (record.exc_text or "")
        assert phone not in text, (record.name, text)
        for code in codes:
            assert code not in text, (record.name, text)


# --- at the same moment -------------------------------------------------------------------------


async def test_final_answer_sent_twice_at_once_registers_one_member(h):
    openids = [new_openid() for _ in range(3)]
    phones = [new_phone() for _ in openids]
    for openid, phone in zip(openids, phones, strict=True):
        await reach(h, openid, "reg.birthday", phone)

    replies = await asyncio.gather(*(say(h, openid, "1990-05-01")
                                     for openid in openids for _ in range(2)))
    await h.bot.drain(5)
    for index, (openid, phone) in enumerate(zip(openids, phones, strict=True)):
        pair = replies[2 * index: 2 * index + 2]
        assert any(WELCOME in r for r in pair), pair
        # The other copy is the same welcome, or (if it came after) no dialog answer at all;
        # never "your phone is taken" for the member's own registration, never an error.
        assert not any(PHONE_TAKEN in r or "系统开小差" in r for r in pair), pair
        member = await Member.get(follower__openid=openid)
        assert member.phone_hash == h.bot.vault.lookup_hash(phone)
        assert member.points == 100
        assert await PointsEntry.filter(member=member).count() == 1
        assert all(member.card_no in r for r in pair if WELCOME in r)
    assert await Member.all().count() == 3
    assert len(welcome_sms(h)) == 3


async def test_two_accounts_registering_one_phone_at_once(h):
    phone = new_phone()
    first, second = new_openid(), new_openid()
    await reach(h, first, "reg.name", phone)
    h.clock.advance(seconds=61)
    await reach(h, second, "reg.name", phone)  # the phone was still free
    await say(h, first, "甲")
    await say(h, second, "乙")

    replies = await asyncio.gather(say(h, first, "跳过"), say(h, second, "跳过"))
    assert sum(WELCOME in r for r in replies) == 1, replies
    loser_reply = next(r for r in replies if WELCOME not in r)
    # The loser proved the code too: told the card is bound elsewhere, and how to move it.
    assert PHONE_TAKEN in loser_reply and masked(phone) in loser_reply

    member = await Member.get(phone_hash=h.bot.vault.lookup_hash(phone))
    winner = (await member.follower).openid
    loser = second if winner == first else first
    assert await Member.all().count() == 1
    assert await PointsEntry.all().count() == 1
    assert (await Follower.get(openid=loser)).member_id is None
    assert await state(loser) is None
    await h.bot.drain(5)
    assert len(welcome_sms(h)) == 1


# --- leaving and coming back --------------------------------------------------------------------


async def test_refollow_after_unfollow_mid_registration_restarts_cleanly(h):
    openid, phone = new_openid(), new_phone()
    await reach(h, openid, "reg.name", phone, scene="store:S001")
    assert await event(h, openid, "unsubscribe") is None
    assert await conversation(openid) is None
    follower = await Follower.get(openid=openid)
    assert not follower.following and follower.member_id is None

    h.clock.advance(minutes=2)
    greeting = await subscribe(h, openid, "store:S002")
    assert "欢迎回来" in greeting and GREETING in greeting
    row = await conversation(openid)
    assert row.state == "reg.consent" and row.data == {}  # not verified, no phone
    assert (await Follower.get(openid=openid)).following

    assert CONSENT in await say(h, openid, "王小明")  # the old step's answer is not taken
    assert await Member.all().count() == 0
    assert ASK_PHONE in await say(h, openid, "同意")
    assert CODE_SENT in await say(h, openid, phone)
    assert len(h.sms_codes(phone)) == 2
    await say(h, openid, last_code(h, phone))
    await say(h, openid, "王小明")
    assert WELCOME in await say(h, openid, "跳过")
    member = await Member.get(follower__openid=openid)
    assert (await member.store).code == "S002"
    assert await Member.all().count() == 1
