"""修改资料: a member changes their name, their phone (an SMS code to the new number first) or adds
the birthday they skipped; staff change them with 改资料 and 改生日. Everything through the signed
webhook, then the database (Member, ProfileChange, AuditEntry, SmsCode) and what the SMS stand-in
received.

The clock moves with ``h.clock.advance`` (SMS limits: one code a minute, five an hour, ten a day,
per phone and per WeChat account); tortoise's auto_now timestamps follow the same clock.
"""

from __future__ import annotations

import itertools
import re

import pytest
import tortoise.timezone

from bot.models import AuditEntry, Delivery, Member, ProfileChange, SmsCode
from bot.rules.parsing import Birthday
from bot.sandbox import wechat_client as wire
from bot.services import members, profile
from tests.support import Harness, add_staff

# What the member sees, one recognisable phrase per template.
MENU = "【修改资料】"
ASK_NAME = "请回复新的称呼"
ASK_PHONE = "请输入新的手机号"
ASK_BIRTHDAY = "您的生日是哪天"
CODE_SENT = "验证码已发送到"
CODE_WRONG = "验证码不对"
CODE_LOCKED = "输错次数太多"
BAD_PHONE = "这好像不是有效的手机号"
RATE_LIMITED = "验证码发送太频繁了"
TAKEN = "已经是另一张会员卡的号码"
SAME = "和现在的一样，没有修改"
BIRTHDAY_SET = "您的生日已经登记过了"
DONE = "✅ 已修改"
NOT_FOUND = "没有找到"
CANCELLED = "已退出修改资料"

_phones = itertools.count(20_000_001)
_openids = itertools.count(1)


def new_phone() -> str:
    return f"139{next(_phones):08d}"


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


@pytest.fixture
async def h(harness_factory, monkeypatch) -> Harness:
    harness = await harness_factory()
    monkeypatch.setattr(tortoise.timezone, "now", harness.clock)
    return harness


async def say(h: Harness, openid: str, text: str) -> str:
    reply = await h.say(openid, text)
    assert reply is not None, f"no reply to {text!r}"
    return reply


async def state(h: Harness, openid: str) -> str | None:
    return (await h.bot.dialogs.load(f"wechat:{openid}")).state


async def joined(h: Harness, phone: str | None = None, **kw) -> tuple[str, str, Member]:
    """A member who registered a while ago (so the SMS limits have room again)."""
    openid, phone = f"o_prof_{next(_openids):04d}", phone or new_phone()
    assert "注册成功" in await h.register(openid, phone, **kw)
    h.clock.advance(hours=25)
    return openid, phone, await Member.get(follower__openid=openid)


async def ask_code(h: Harness, openid: str, phone: str) -> str:
    """修改资料 → 2 → the new number: the reply to the number."""
    assert MENU in await say(h, openid, "修改资料")
    assert ASK_PHONE in await say(h, openid, "2")
    return await say(h, openid, phone)


def blanked(reply: str) -> str:
    return re.sub(r"\d{3}\*{4}\d{4}", "#", reply)


# --- the name ---

async def test_a_member_changes_their_name_and_sees_it_in_my_data(h):
    openid, _, member = await joined(h)
    menu = await say(h, openid, "修改资料")
    assert "称呼：王小明" in menu and "3. 生日：未填写" in menu
    assert await state(h, openid) == "profile.menu"
    assert ASK_NAME in await say(h, openid, "1")
    assert f"{DONE}称呼：王小明 → 王大明" in await say(h, openid, "王大明")
    assert await state(h, openid) is None
    await member.refresh_from_db()
    assert member.name == "王大明"
    change = await ProfileChange.get(member_id=member.id)
    assert (change.field, change.before, change.after, change.by) == (
        "name", "王小明", "王大明", f"member:{member.id}")
    assert "称呼：王小明 → 王大明（本人）" in await say(h, openid, "我的数据")


async def test_a_name_that_is_no_name_is_asked_again(h):
    openid, _, member = await joined(h)
    await say(h, openid, "修改资料")
    await say(h, openid, "1")
    assert "称呼不能只有数字" in await say(h, openid, "12345")
    # A command is no name: it answers, and the question is asked again.
    assert "继续修改资料：请回复新的称呼" in await say(h, openid, "积分")
    assert await state(h, openid) == "profile.name"
    assert SAME in await say(h, openid, "王小明")
    assert await ProfileChange.filter(member_id=member.id).count() == 0


# --- the phone ---

async def test_a_new_phone_proved_by_its_code_replaces_the_old_one_at_once(h):
    openid, old, member = await joined(h)
    new = new_phone()
    assert f"{CODE_SENT} {masked(new)}" in await ask_code(h, openid, new)
    assert await state(h, openid) == "profile.code"
    reply = await say(h, openid, h.sms_codes(new)[-1])
    assert f"{DONE}手机号：{masked(old)} → {masked(new)}" in reply
    await member.refresh_from_db()
    assert member.phone_hash == h.bot.vault.lookup_hash(new)
    assert h.bot.vault.decrypt(member.phone_enc) == new
    change = await ProfileChange.get(member_id=member.id)
    assert (change.field, change.before, change.after) == ("phone", masked(old), masked(new))
    # The old number finds nobody any more; the new one finds the member.
    await add_staff("o_prof_clerk", "clerk")
    assert NOT_FOUND in await say(h, "o_prof_clerk", f"查询 {old}")
    found = await say(h, "o_prof_clerk", f"查询 {new}")
    assert member.card_no in found and masked(new) in found and new not in found
    data = await say(h, openid, "我的数据")
    assert f"手机号：{masked(old)} → {masked(new)}（本人）" in data
    assert old not in data and new not in data


async def test_a_wrong_code_changes_nothing_and_five_void_it(h):
    openid, old, member = await joined(h)
    new = new_phone()
    await ask_code(h, openid, new)
    code = h.sms_codes(new)[-1]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert f"{CODE_WRONG}，还可以再试 4 次" in await say(h, openid, wrong)
    for _ in range(3):
        await say(h, openid, wrong)
    assert CODE_LOCKED in await say(h, openid, wrong)
    assert CODE_LOCKED in await say(h, openid, code)  # too late: the code is void
    await member.refresh_from_db()
    assert member.phone_hash == h.bot.vault.lookup_hash(old)
    assert await ProfileChange.filter(member_id=member.id).count() == 0
    assert await state(h, openid) == "profile.code"


async def test_codes_to_a_new_number_follow_the_registration_limits(h):
    openid, _, _ = await joined(h)
    new = new_phone()
    assert CODE_SENT in await ask_code(h, openid, new)
    limited = await say(h, openid, "重发")
    assert RATE_LIMITED in limited and "秒后再试" in limited
    for _ in range(4):
        h.clock.advance(seconds=61)
        assert CODE_SENT in await say(h, openid, "重发")
    h.clock.advance(seconds=61)
    limited = await say(h, openid, "重发")
    assert RATE_LIMITED in limited and "分钟后再试" in limited
    assert len(h.sms_codes(new)) == 5
    # The account's limit holds whatever the number.
    assert ASK_PHONE in await say(h, openid, "换号")
    assert RATE_LIMITED in await say(h, openid, new_phone())
    assert await SmsCode.filter(user=openid, purpose="profile_phone").count() == 5


async def test_the_number_the_member_has_now_is_refused(h):
    openid, phone, _ = await joined(h)
    assert SAME in await ask_code(h, openid, phone)
    assert await state(h, openid) is None
    assert len(h.sms_codes(phone)) == 1  # only the registration's code


async def test_an_invalid_number_is_asked_again(h):
    openid, _, _ = await joined(h)
    assert BAD_PHONE in await ask_code(h, openid, "1380013800")
    assert BAD_PHONE in await say(h, openid, "23800138000")
    assert await state(h, openid) == "profile.phone"
    assert await SmsCode.filter(user=openid, purpose="profile_phone").count() == 0


async def test_another_members_number_is_refused_only_after_its_code(h):
    openid, own, member = await joined(h)
    _, theirs, other = await joined(h)
    free = new_phone()
    # Before the code, a member's number and a free one get the same answer.
    to_free = await ask_code(h, openid, free)
    assert ASK_PHONE in await say(h, openid, "换号")
    h.clock.advance(seconds=61)
    to_theirs = await say(h, openid, theirs)
    assert CODE_SENT in to_theirs and blanked(to_theirs) == blanked(to_free)
    assert await state(h, openid) == "profile.code"
    # After it, the number is refused and nobody's phone moved.
    reply = await say(h, openid, h.sms_codes(theirs)[-1])
    assert TAKEN in reply and masked(theirs) in reply
    assert await state(h, openid) is None
    await member.refresh_from_db()
    await other.refresh_from_db()
    assert member.phone_hash == h.bot.vault.lookup_hash(own)
    assert other.phone_hash == h.bot.vault.lookup_hash(theirs)
    assert await ProfileChange.all().count() == 0


async def test_a_wechat_retry_of_the_code_message_changes_once(h):
    openid, _, member = await joined(h)
    new = new_phone()
    await ask_code(h, openid, new)
    xml = wire.text(openid, h.sms_codes(new)[-1])
    first = await h.post(xml)
    again = await h.post(xml)  # the same MsgId
    assert DONE in first["Content"]
    assert again is None or again["Content"] == first["Content"]
    assert await ProfileChange.filter(member_id=member.id).count() == 1
    await member.refresh_from_db()
    assert member.phone_hash == h.bot.vault.lookup_hash(new)


async def test_a_registration_racing_for_the_number_fails_cleanly(h, any_db, monkeypatch):
    """Another member's registration of the number between the check and the update: the unique
    phone_hash fails the change, which is refused and leaves both members as they were."""
    _, own, member = await joined(h)
    _, theirs, other = await joined(h)

    async def nobody(bot, phone):
        return None

    monkeypatch.setattr(profile, "find_by_phone", nobody)
    with pytest.raises(profile.ProfileRefused) as refused:
        await profile.change_phone(h.bot, member, theirs, key="race")
    assert refused.value.reason == "profile_phone_taken.j2"
    assert (await Member.get(id=member.id)).phone_hash == h.bot.vault.lookup_hash(own)
    assert (await Member.get(id=other.id)).phone_hash == h.bot.vault.lookup_hash(theirs)
    assert await ProfileChange.all().count() == 0
    assert await members.find_by_phone(h.bot, own) == member


# --- the birthday ---

async def test_a_birthday_is_added_once_then_only_staff_change_it(h):
    openid, _, member = await joined(h)
    await say(h, openid, "修改资料")
    assert ASK_BIRTHDAY in await say(h, openid, "3")
    assert "没看懂这个日期" in await say(h, openid, "明年")
    assert f"{DONE}生日：未填写 → 1990年5月1日" in await say(h, openid, "1990-05-01")
    await member.refresh_from_db()
    assert (member.birth_year, member.birth_month, member.birth_day) == (1990, 5, 1)
    menu = await say(h, openid, "修改资料")
    assert "生日：1990年5月1日（已登记" in menu and "3." not in menu
    assert BIRTHDAY_SET in await say(h, openid, "3")
    assert await state(h, openid) is None
    await member.refresh_from_db()
    assert member.birth_month == 5
    assert await ProfileChange.filter(member_id=member.id).count() == 1


async def test_a_birthday_set_meanwhile_is_not_overwritten(h):
    _, _, member = await joined(h, birthday="1990-05-01")
    with pytest.raises(profile.ProfileRefused) as refused:
        await profile.add_birthday(member, Birthday(6, 2, 1991), key="late")
    assert refused.value.reason == "profile_birthday_set.j2"
    await member.refresh_from_db()
    assert (member.birth_month, member.birth_day) == (5, 1)


# --- staff ---

async def test_a_manager_sets_a_birthday_with_gaishengri_and_it_is_audited(h):
    openid, phone, member = await joined(h, birthday="1990-05-01")
    manager = await add_staff("o_prof_manager", "manager", name="张店长")
    await add_staff("o_prof_clerk2", "clerk")
    assert "没有权限" in await say(h, "o_prof_clerk2", f"改生日 {phone} 1991-06-02")
    reply = await say(h, "o_prof_manager", f"改生日 {phone} 1991-06-02")
    assert f"{DONE} 王小明" in reply and "生日：1990年5月1日 → 1991年6月2日" in reply
    assert phone not in reply and masked(phone) in reply
    await member.refresh_from_db()
    assert (member.birth_year, member.birth_month, member.birth_day) == (1991, 6, 2)
    change = await ProfileChange.get(member_id=member.id)
    assert change.staff_id == manager.id and change.by.startswith(f"staff:{manager.id}")
    entry = await AuditEntry.get(action="profile_birthday")
    assert (entry.staff_id, entry.member_id) == (manager.id, member.id)
    assert entry.detail == f"profile_change:{change.id}"
    assert "不存在" in await say(h, "o_prof_manager", f"改生日 {phone} 2月30日")
    assert SAME in await say(h, "o_prof_manager", f"改生日 {phone} 1991-06-02")
    assert "生日：1990年5月1日 → 1991年6月2日（店员）" in await say(h, openid, "我的数据")


async def test_a_manager_changes_a_name_and_a_phone_with_gaiziliao(h):
    openid, old, member = await joined(h)
    _, theirs, _ = await joined(h)
    manager = await add_staff("o_prof_manager2", "manager")
    reply = await say(h, "o_prof_manager2", f"改资料 {old} 姓名 李 小红")
    assert "称呼：王小明 → 李 小红" in reply
    new = new_phone()
    reply = await say(h, "o_prof_manager2", f"改资料 {member.card_no} 手机 {new}")
    assert f"手机号：{masked(old)} → {masked(new)}" in reply and new not in reply
    assert NOT_FOUND in await say(h, "o_prof_manager2", f"查询 {old}")
    assert member.card_no in await say(h, "o_prof_manager2", f"查询 {new}")
    # Staff are told at once that a number is another member's (查询 would tell them too).
    taken = await say(h, "o_prof_manager2", f"改资料 {new} 手机 {theirs}")
    assert TAKEN in taken and "验证成功" not in taken and "找店员" not in taken
    assert "不是有效的手机号" in await say(h, "o_prof_manager2", f"改资料 {new} 手机 12345")
    assert "改生日" in await say(h, "o_prof_manager2", f"改资料 {new} 生日 5月1日")
    actions = await AuditEntry.filter(staff_id=manager.id, action__startswith="profile_"
                                      ).values_list("action", flat=True)
    assert sorted(actions) == ["profile_name", "profile_phone"]
    await member.refresh_from_db()
    assert member.name == "李 小红" and member.phone_hash == h.bot.vault.lookup_hash(new)
    data = await say(h, openid, "我的数据")
    assert "称呼：王小明 → 李 小红（店员）" in data
    assert f"{masked(old)} → {masked(new)}（店员）" in data
    # The member is told of each change staff made, once.
    await h.settle()
    changes = await ProfileChange.filter(member_id=member.id).values_list("id", flat=True)
    told = await Delivery.filter(key__startswith="notice:profile:").values_list("key", flat=True)
    assert sorted(told) == sorted(f"notice:profile:{n}" for n in changes)


async def test_the_menu_button_opens_the_dialog_and_cancel_leaves_it(h):
    openid, _, _ = await joined(h)
    reply = await h.post(wire.event(openid, "CLICK", "PROFILE"))
    assert MENU in reply["Content"]
    assert CANCELLED in await say(h, openid, "取消")
    assert await state(h, openid) is None
    assert "还不是" in await say(h, "o_prof_guest", "修改资料")


async def test_erasure_takes_the_history_with_it(h):
    openid, _, member = await joined(h)
    await say(h, openid, "修改资料")
    await say(h, openid, "1")
    await say(h, openid, "王大明")
    await say(h, openid, "注销")
    await say(h, openid, "确认注销")
    phone = members.phone_of(h.bot, member)
    assert "注销" in await say(h, openid, h.sms_codes(phone)[-1])
    assert await ProfileChange.filter(member_id=member.id).count() == 0
