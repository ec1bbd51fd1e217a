"""Every declared dialog state × every declared global command, through the real webhook (signed
and AES-encrypted as WeChat does), each state reached by walking its real dialog.

Generated from the declarations (bot/chat/states.py, bot/chat/commands.py): a new dialog joins by
being declared (and by a walk below, which a test insists on); a new global command joins with
its `sample`. What each command must do:

* 取消: the dialog's own goodbye, and no dialog afterwards;
* another interrupting command: the same answer, and the same dialog state afterwards, as the
  same kind of user sending it with no dialog at all (the dialog ended first); a staff command
  (which suspends) leaves a member's dialog waiting, and in a till dialog it answers the same
  and re-asks the dialog's question, as a non-interrupting command does;
* a non-interrupting command: an answer, then "继续<title>：<the state's question>" in the same
  reply (or, after an image, as a message of its own), and the dialog where it was.

The one exception is a relay dialog (relay=True: 人工's, talking with a person): there no global
command acts. 取消 still ends it with its goodbye (its own route); every other command's words
are relayed to the person, not answered (the member's message is in the thread), and a menu
button only says how to end the talk; the dialog stays.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import tortoise.timezone

from bot.app import DISPATCHER
from bot.chat import commands
from bot.chat.commands import GlobalCommand
from bot.chat.context import Context
from bot.chat.inbound import Inbound
from bot.chat.states import State, all_states
from bot.config import RedisConfig
from bot.models import (
    CouponTemplate,
    Delivery,
    Member,
    Purchase,
    Staff,
    Store,
    SupportMessage,
)
from bot.sandbox import wechat_client as wire
from bot.services import coupons, loyalty
from bot.services import staff as staff_service
from tests.support import REDIS_UP, STEADY_POINTS, Harness

_openids = itertools.count(1)
_phones = itertools.count(30_000_001)
_times = itertools.count(1_950_000_000)

TARGET_PHONE = "13800138000"  # the member staff commands look up
REDIS_URL = "redis://127.0.0.1:6379/0"


def new_phone() -> str:
    return f"139{next(_phones):08d}"


async def dialog_state(h: Harness, openid: str) -> str | None:
    return (await h.bot.dialogs.load(f"wechat:{openid}")).state


async def send(h: Harness, openid: str, message: str) -> dict | None:
    """A text, or "click:KEY" for a menu button."""
    if message.startswith("click:"):
        xml = wire.event(openid, "CLICK", message.removeprefix("click:"),
                         create_time=next(_times))
    else:
        xml = wire.text(openid, message)
    return await h.post(xml)


# --- walking each dialog to each state ---

class User:
    def __init__(self, h: Harness, openid: str, phone: str):
        self.h, self.openid, self.phone = h, openid, phone

    async def say(self, text: str) -> str:
        reply = await send(self.h, self.openid, text)
        return reply["Content"] if reply else ""


async def guest(h: Harness, openid: str, staff: bool) -> User:
    if staff:
        await Staff.create(openid=openid, role="owner", store=await Store.get(code="S001"))
    return User(h, openid, new_phone())


async def member(h: Harness, openid: str, staff: bool) -> User:
    user = await guest(h, openid, staff)
    assert "注册成功" in await h.register(openid, user.phone)
    found = await Member.get(follower__openid=openid)
    await loyalty.post_points(found.id, 900, kind="adjust", reason="测试", key=f"t:{openid}")
    return user


async def visitor(h: Harness, openid: str, staff: bool) -> User:
    """A member with a visit to rate (评价): a purchase written straight to the database, so
    no question after it starts a dialog of its own."""
    user = await member(h, openid, staff)
    found = await Member.get(follower__openid=openid)
    await Purchase.create(member_id=found.id, store=await Store.get(code="S001"), amount=10000,
                          idempotency_key=f"matrix-visit:{openid}")
    return user


async def _registration(user: User, step: str) -> None:
    await user.h.post(wire.event(user.openid, "subscribe", "qrscene_store:S001",
                                 create_time=next(_times)))
    if step == "consent":
        return
    await user.say("同意")
    if step == "phone":
        return
    await user.say(user.phone)
    if step == "code":
        return
    await user.say(user.h.sms_codes(user.phone)[-1])
    if step == "name":
        return
    await user.say("王小明")


async def _resume(user: User) -> None:
    await _registration(user, "name")
    user.h.clock.advance(minutes=user.h.config.shop.resume_after_minutes + 1)
    assert "还没完成" in await user.say("在吗")


async def staff_member(h: Harness, openid: str, staff: bool) -> User:
    """A clerk's account (an owner, so every staff command is allowed) for the till's dialogs,
    whatever the command: the baseline without a dialog is the same kind of user."""
    return await guest(h, openid, True)


async def _big_purchase(user: User) -> None:
    limit = user.h.config.points.confirm_above
    assert "请核对金额" in await user.say(f"消费 {TARGET_PHONE} {limit + 1}")


async def _threshold_coupon(user: User) -> None:
    target = await Member.get(follower__openid="o_mx_target")
    template = await CouponTemplate.get(code="CUT30")
    coupon = await coupons.issue(user.h.bot, target, template, source="manual",
                                 key=f"matrix:{user.openid}")
    assert "还没有核销" in await user.say(f"核销 {coupon.code}")


async def _big_redemption(user: User) -> None:
    target = await Member.get(follower__openid="o_mx_target")
    template = await CouponTemplate.get(code="CUT30")
    coupon = await coupons.issue(user.h.bot, target, template, source="manual",
                                 key=f"matrix:{user.openid}")
    limit = user.h.config.points.confirm_above
    assert "请核对金额" in await user.say(f"核销 {coupon.code} {limit + 1}")


async def _second_punch_card(user: User) -> None:
    await user.say(f"开卡 {TARGET_PHONE} WASH10")
    assert "还没有再开卡" in await user.say(f"开卡 {TARGET_PHONE} WASH10")


async def _broadcast_preview(user: User) -> None:
    assert "回复「确认」开始群发" in await user.say("群发 普通会员 会员日快乐")


async def _taken_time(user: User) -> None:
    # No one works at 23:00: the nearest free times are offered instead.
    assert "不接受预约" in await user.say("预约 洗剪吹 明天 23:00")


Walk = Callable[[User], Awaitable[None]]
WALKS: dict[str, tuple[Callable, Walk]] = {
    "reg.consent": (guest, lambda u: _registration(u, "consent")),
    "reg.phone": (guest, lambda u: _registration(u, "phone")),
    "reg.code": (guest, lambda u: _registration(u, "code")),
    "reg.name": (guest, lambda u: _registration(u, "name")),
    "reg.birthday": (guest, lambda u: _registration(u, "birthday")),
    "reg.resume": (guest, _resume),
    "exchange.choose": (member, lambda u: u.say("积分兑换")),
    "exchange.confirm": (member, lambda u: _then(u, "积分兑换", "1")),
    "erase.confirm": (member, lambda u: u.say("注销")),
    "erase.code": (member, lambda u: _erase_code(u)),
    "profile.menu": (member, lambda u: u.say("修改资料")),
    "profile.name": (member, lambda u: _then(u, "修改资料", "1")),
    "profile.phone": (member, lambda u: _then(u, "修改资料", "2")),
    "profile.code": (member, lambda u: _profile_code(u)),
    "profile.birthday": (member, lambda u: _then(u, "修改资料", "3")),
    "purchase.confirm": (staff_member, _big_purchase),
    "redeem.amount": (staff_member, _threshold_coupon),
    "redeem.big": (staff_member, _big_redemption),
    "punch.confirm": (staff_member, _second_punch_card),
    "broadcast.confirm": (staff_member, _broadcast_preview),
    "book.service": (member, lambda u: u.say("预约")),
    "book.day": (member, lambda u: _then(u, "预约", "1")),
    "book.time": (member, lambda u: _then(u, "预约", "1", "1")),
    "book.resource": (member, lambda u: _then(u, "预约", "1", "1", "1")),
    "book.confirm": (member, lambda u: _then(u, "预约", "1", "1", "1", "0")),
    "book.full": (member, _taken_time),
    "rate.stars": (visitor, lambda u: u.say("评价")),
    "rate.comment": (visitor, lambda u: _then(u, "评价", "4")),
    "support.talking": (member, lambda u: u.say("人工")),
}


async def _then(user: User, *texts: str) -> None:
    for text in texts:
        await user.say(text)


async def _erase_code(user: User) -> None:
    await user.say("注销")
    user.h.clock.advance(seconds=61)  # the registration code went to this phone a moment ago
    assert "验证码已发送到" in await user.say("确认注销")


async def _profile_code(user: User) -> None:
    await _then(user, "修改资料", "2")
    user.h.clock.advance(seconds=61)  # the registration code went to this account a moment ago
    assert "验证码已发送到" in await user.say(new_phone())


def test_every_declared_state_has_a_walk():
    assert {state.name for state in all_states()} == set(WALKS)


# --- the matrix ---

@pytest.fixture(params=["database", "redis"])
async def h(request, harness_factory, monkeypatch) -> AsyncIterator[Harness]:
    """Dialogs stored in the database, and in Redis (several workers share them there)."""
    overrides, prefix = {}, f"memberbot-matrix-{secrets.token_hex(4)}"
    if request.param == "redis":
        if not REDIS_UP:
            pytest.skip("Redis is not running on 127.0.0.1:6379 (CI runs these)")
        overrides["redis"] = RedisConfig(url=REDIS_URL, prefix=prefix)
    harness = await harness_factory(points=STEADY_POINTS, **overrides)
    monkeypatch.setattr(tortoise.timezone, "now", harness.clock)  # auto_now follows the clock
    assert "注册成功" in await harness.register("o_mx_target", TARGET_PHONE)
    yield harness
    if request.param == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def sample(h: Harness, command: GlobalCommand) -> str:
    invite = ""
    if "{invite}" in command.sample:
        invite = await staff_service.create_invite("S001", "clerk", "", h.bot.now())
    return command.sample.format(invite=invite, phone=TARGET_PHONE)


def strings(value) -> list[str]:
    """The texts inside a delivery's payload."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in strings(item)] if isinstance(value, list) else []


def shape(reply: dict | None) -> str:
    """A reply with the numbers that differ from user to user (card numbers, codes) blanked."""
    if reply is None:
        return "(silent)"
    if reply.get("MsgType") == "image":
        return "(image)"
    return re.sub(r"[0-9A-Z]{4,}", "#", reply["Content"])


async def question(h: Harness, openid: str, state: State) -> str:
    """The state's question as the engine renders it, from the declarations."""
    dialog = await h.bot.dialogs.load(f"wechat:{openid}")
    found = await Member.get_or_none(follower__openid=openid)
    router = h.server.app[DISPATCHER].router
    ctx = Context(Inbound("wechat", openid, "text", "matrix"), h.bot, dialog, None, found,
                  router=router)
    return router.ask(ctx, state).content


async def without_dialog(h: Harness, kind: Callable, command: GlobalCommand,
                         cache: dict) -> tuple[str, str | None]:
    """What this command does for this kind of user when no dialog is open."""
    key = (kind, command.name)
    if key not in cache:
        user = await kind(h, f"o_mx_{next(_openids):04d}", command.staff)
        reply = await send(h, user.openid, await sample(h, command))
        cache[key] = shape(reply), await dialog_state(h, user.openid)
    return cache[key]


@pytest.mark.parametrize("state", [state.name for state in all_states()])
async def test_every_global_command_in_every_dialog_state(h, state):
    kind, walk = WALKS[state]
    declared = next(s for s in all_states() if s.name == state)
    title = declared.group.title
    baseline: dict = {}
    failures = []
    for command in commands.ALL:
        user = await kind(h, f"o_mx_{next(_openids):04d}", command.staff)
        await walk(user)
        assert await dialog_state(h, user.openid) == state, (state, command)
        replies_before = await Delivery.filter(openid=user.openid, purpose="reply").count()
        said = await sample(h, command)
        reply = await send(h, user.openid, said)
        after = await dialog_state(h, user.openid)
        text = reply.get("Content", "") if reply else ""
        if command is commands.CANCEL:
            expected = h.bot.templates.render(declared.group.cancelled)
            ok = text == expected and after is None
        elif declared.group.relay:
            # Talking with a person: the command's words go to the person (nobody is on duty
            # here, so they wait in the thread), a menu button is told how to end the talk.
            if said.startswith("click:"):
                ok = "结束" in text
            else:
                ok = await SupportMessage.filter(
                    thread__member__follower__openid=user.openid, text=said).exists()
            ok = ok and after == state
        elif command.suspends and declared.group.staff:
            # At the till a staff command answers as without the dialog, then re-asks it.
            alone = await without_dialog(h, kind, command, baseline)
            asked = f"\n\n继续{title}：{await question(h, user.openid, declared)}"
            ok = (alone[1] is None and after == state and text.endswith(asked)
                  and shape({"Content": text.removesuffix(asked)}) == alone[0])
        elif command.interrupts:
            alone = await without_dialog(h, kind, command, baseline)
            # A suspending command answers as if there were no dialog, and the dialog waits.
            left = state if command.suspends else alone[1]
            ok = (shape(reply), after) == (alone[0], left) and f"继续{title}：" not in text
        else:
            asked = f"\n\n继续{title}：{await question(h, user.openid, declared)}"
            if reply and reply.get("MsgType") == "image":
                await h.bot.drain(5)
                sent = await Delivery.filter(openid=user.openid, purpose="reply")
                ok = len(sent) > replies_before and any(
                    asked.strip() in text for row in sent for text in strings(row.payload))
            else:
                ok = text.endswith(asked) and len(text) > len(asked)
            ok = ok and after == state
        if not ok:
            failures.append(f"{state} × {command.name}: state {after!r}, reply {text!r}")
    assert not failures, "\n".join(failures)
