"""标签 in chat, over HTTP as WeChat sends it: staff add, remove and list a member's tags; each
change is audited, a repeat changes nothing, phones stay masked, and segments select by them."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import AuditEntry, Member, MemberTag
from bot.services import segments
from tests.support import add_staff

PHONE, MASKED = "13800138000", "138****8000"


@pytest.fixture
async def member(shop) -> Member:
    assert "注册成功" in await shop.register("o_member", PHONE, name="王小明")
    await add_staff("o_clerk", "clerk", name="小王")
    return await Member.get(follower__openid="o_member")


async def tags_of(member: Member) -> list[str]:
    return sorted(await MemberTag.filter(member_id=member.id).values_list("tag", flat=True))


async def test_staff_add_remove_and_list_tags(shop, member):
    reply = await shop.say("o_clerk", f"标签 {PHONE} 瑜伽 VIP")
    assert reply.startswith(f"✅ 王小明 {MASKED}（{member.card_no}）的标签：VIP、瑜伽"), reply
    assert "新加：瑜伽、VIP" in reply and PHONE not in reply
    assert await tags_of(member) == ["VIP", "瑜伽"]

    reply = await shop.say("o_clerk", f"标签 {member.card_no} -VIP 普拉提")
    assert "的标签：普拉提、瑜伽" in reply and "新加：普拉提" in reply and "去掉：VIP" in reply
    assert await tags_of(member) == ["普拉提", "瑜伽"]

    reply = await shop.say("o_clerk", f"标签 {PHONE}")
    assert reply == f"王小明 {MASKED}（{member.card_no}）的标签：普拉提、瑜伽"


async def test_each_change_is_one_audit_entry_and_a_repeat_writes_none(shop, member):
    await shop.say("o_clerk", f"标签 {PHONE} 瑜伽")
    await shop.say("o_clerk", f"标签 {PHONE} -瑜伽 VIP")
    entries = await AuditEntry.filter(action="tag_member").order_by("id")
    assert [(e.before, e.after, e.detail) for e in entries] == [
        ({"tags": []}, {"tags": ["瑜伽"]}, "+瑜伽"),
        ({"tags": ["瑜伽"]}, {"tags": ["VIP"]}, "+VIP -瑜伽"),
    ]
    assert all(e.member_id == member.id and e.store_code == "S001" for e in entries)
    # Adding a tag they have, removing one they lack: nothing changes, nothing is written.
    reply = await shop.say("o_clerk", f"标签 {PHONE} VIP -瑜伽")
    assert not reply.startswith("✅") and "新加" not in reply and "去掉" not in reply
    assert await AuditEntry.filter(action="tag_member").count() == 2


async def test_many_at_once_add_a_tag_once(shop, member):
    replies = await asyncio.gather(*(shop.say("o_clerk", f"标签 {PHONE} 瑜伽 {word}")
                                     for word in ("A", "B", "C", "D", "E", "F")))
    assert sum("新加：瑜伽" in reply for reply in replies) == 1, replies
    assert await tags_of(member) == ["A", "B", "C", "D", "E", "F", "瑜伽"]
    [entry_with_yoga] = [e for e in await AuditEntry.filter(action="tag_member")
                         if "+瑜伽" in e.detail]
    assert entry_with_yoga.after["tags"][-1] == "瑜伽"


@pytest.mark.parametrize("word", ["-", "+瑜伽", "超过十六个字的标签超过十六个字的标签", "--瑜伽"])
async def test_a_word_that_cannot_be_a_tag_is_refused(shop, member, word):
    reply = await shop.say("o_clerk", f"标签 {PHONE} 瑜伽 {word}")
    assert f"「{word}」不能作标签" in reply
    assert await tags_of(member) == []  # the good one is not added either


async def test_usage_unknown_members_and_non_staff(shop, member):
    assert await shop.say("o_clerk", "标签") == "格式：标签 <手机号|卡号> [标签 -标签 …]"
    too_many = " ".join(f"t{n}" for n in range(6))
    assert "一次最多 5 个" in await shop.say("o_clerk", f"标签 {PHONE} {too_many}")
    assert "没有找到" in await shop.say("o_clerk", "标签 13900139000 瑜伽")
    assert await MemberTag.all().count() == 0
    # A member typing it is just not understood, and tags nothing.
    await shop.say("o_member", f"标签 {PHONE} 瑜伽")
    assert await MemberTag.all().count() == 0


async def test_segments_select_by_the_tags_staff_gave(shop, member):
    await shop.register("o_other", "13700137000", name="李雷")
    await shop.say("o_clerk", f"标签 {PHONE} 瑜伽")
    segment = await segments.parse_checked("tag=瑜伽", shop.config)
    assert [i async for b in segments.id_batches(segment) for i in b] == [member.id]
    assert await segments.count(await segments.parse_checked("tag!=瑜伽", shop.config)) == 1
