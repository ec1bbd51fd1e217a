"""Members' rights over their data, key rotation, and the append-only audit log."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from asyncpg.exceptions import RaiseError
from tortoise.exceptions import OperationalError

from bot.infra.vault import Vault, new_data_key
from bot.models import (
    AuditEntry,
    Coupon,
    Follower,
    Member,
    PointsEntry,
    Rating,
    SmsCode,
    Store,
    SupportMessage,
    SupportThread,
    ThreadStatus,
)
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import loyalty, privacy, support, wallet
from bot.services.staff import Actor, audit
from tests.support import make_config


async def _erase(harness, openid: str, phone: str) -> str | None:
    harness.clock.advance(seconds=61)  # one SMS a minute per phone: registration just sent one
    await harness.say(openid, "注销")
    await harness.say(openid, "确认注销")
    return await harness.say(openid, harness.sms_codes(phone)[-1])


async def test_my_data_shows_what_is_stored_with_the_phone_masked(harness):
    await harness.register("o_p1", "13800138011", name="周女士", birthday="1990-05-01")
    reply = await harness.say("o_p1", "我的数据")
    member = await Member.get(name="周女士")
    assert member.card_no in reply and "周女士" in reply and "1990年5月1日" in reply
    assert "138****8011" in reply and "13800138011" not in reply
    assert "示例门店·总店" in reply and harness.config.shop.privacy_url in reply
    # One fact a line: the marketing line and the policy link are not run together.
    assert f"\n隐私政策：{harness.config.shop.privacy_url}" in reply


async def test_erasure_removes_personal_data_and_keeps_the_ledger_adding_up(harness):
    await harness.register("o_p2", "13800138012", name="吴先生", birthday="5月1日")
    member = await Member.get(name="吴先生")
    assert (await Coupon.filter(member=member, status="issued").count()) == 1  # welcome coupon

    assert "已删除" in await _erase(harness, "o_p2", "13800138012")

    erased = await Member.get(id=member.id)
    assert erased.erased_at and erased.marketing_opt_out_at
    assert (erased.name, erased.phone_enc, erased.birth_month) == ("", "", None)
    assert erased.card_no == member.card_no  # never reused
    # Points cleared through the ledger: the cached balance is still the sum of its entries.
    assert await loyalty.check_invariant(member.id) == (0, 0, 0)
    assert await PointsEntry.filter(member_id=member.id, reason="会员注销").count() == 1
    assert await Coupon.filter(member_id=member.id, status="issued").count() == 0
    assert (await Follower.get(openid="o_p2")).member_id is None
    assert not await SmsCode.filter(phone_hash=member.phone_hash).exists()
    assert await AuditEntry.filter(member_id=member.id, action="erase").count() == 1
    # The follower is a stranger now, and the phone can register again.
    assert "还不是" in await harness.say("o_p2", "积分")


async def test_erasure_blanks_what_the_member_wrote_to_the_shop(harness):
    await harness.register("o_p2w", "13800138019", name="郑女士")
    member = await Member.get(name="郑女士")
    thread, _ = await support.open_thread(harness.bot, member.id, store_id=None,
                                          reason="asked", key="erase-test")
    await SupportMessage.create(thread=thread, key="m1", from_member=True, text="我住在某某路",
                                created_at=harness.bot.now())
    await Rating.create(visit="purchase:999", key="r1", member=member, stars=2,
                        comment="电话打给我 13800138019", created_at=harness.bot.now())

    assert "已删除" in await _erase(harness, "o_p2w", "13800138019")

    assert await Rating.get(member_id=member.id).values_list("comment", flat=True) == ""
    assert await SupportMessage.get(key="m1").values_list("text", flat=True) == ""
    closed = await SupportThread.get(id=thread.id)
    assert closed.status == ThreadStatus.CLOSED and closed.open_member is None


async def test_erasure_needs_the_sms_code_and_can_be_cancelled(harness):
    await harness.register("o_p3", "13800138013")
    await harness.say("o_p3", "注销")
    assert "已取消注销" in await harness.say("o_p3", "取消")
    harness.clock.advance(seconds=61)
    await harness.say("o_p3", "注销")
    await harness.say("o_p3", "确认注销")
    assert "验证码不对" in await harness.say("o_p3", "000000")
    assert (await Member.get(follower__openid="o_p3")).erased_at is None


async def test_erasure_is_refused_while_money_is_on_the_card(harness):
    await harness.register("o_p4", "13800138014")
    member = await Member.get(follower__openid="o_p4")
    await wallet.top_up(harness.bot, member, 10000, actor=Actor.cli(await Store.get(code="S001")),
                        key="topup-p4")
    assert "储值还有 ¥100.00" in await harness.say("o_p4", "注销")
    assert (await Member.get(id=member.id)).erased_at is None


async def test_opt_out_by_chat_and_by_sms(harness):
    await harness.register("o_p5", "13800138015")
    assert "已为您退订" in await harness.say("o_p5", "退订")
    assert (await Member.get(follower__openid="o_p5")).marketing_opt_out_at is not None

    await harness.register("o_p6", "13800138016")
    body = json.dumps([{"phone_number": "13800138016", "send_time": "2026-11-22 10:15:02",
                        "content": "TD", "sign_name": "示例门店", "dest_code": "1",
                        "sequence_id": 9}], ensure_ascii=False)
    async with harness.session.post(str(harness.server.make_url("/sms/uplink")),
                                    data=body.encode()) as response:
        assert response.status == 200
    assert (await Member.get(follower__openid="o_p6")).marketing_opt_out_at is not None


async def test_subscribing_again_gives_consent_back_with_its_time(harness):
    await harness.register("o_p9", "13800138019")
    assert "不用重复订阅" in await harness.say("o_p9", "订阅")  # never opted out
    assert "已为您退订" in await harness.say("o_p9", "退订")
    opted_out_at = (await Member.get(follower__openid="o_p9")).marketing_opt_out_at
    harness.clock.advance(seconds=30)

    assert "已为您恢复订阅" in await harness.say("o_p9", "订阅")
    member = await Member.get(follower__openid="o_p9")
    assert member.marketing_opt_out_at is None
    assert member.marketing_opt_in_at > opted_out_at
    # The opt-out it ended stays on record.
    entry = await AuditEntry.get(member_id=member.id, action="marketing_opt_in")
    assert entry.before == {"marketing_opt_out_at": opted_out_at.isoformat()}
    assert entry.after == {"marketing_opt_in_at": member.marketing_opt_in_at.isoformat()}
    assert "恢复订阅" in await harness.say("o_p9", "我的数据")

    assert "不用重复订阅" in await harness.say("o_p9", "恢复推送")
    assert await AuditEntry.filter(member_id=member.id, action="marketing_opt_in").count() == 1
    await harness.say("o_p9", "退订")
    assert "已为您恢复订阅" in await harness.say("o_p9", "恢复推送")


async def test_help_lists_subscribing_and_guests_are_told_to_join(harness):
    assert "回复「注册」" in await harness.say("o_p10", "订阅")
    await harness.register("o_p11", "13800138020")
    help_text = await harness.say("o_p11", "帮助")
    assert "「退订」" in help_text and "「订阅」" in help_text


async def test_a_bare_t_opts_out_by_sms_but_is_a_typo_in_chat(harness):
    await harness.register("o_p7", "13800138017")
    reply = await harness.say("o_p7", "T")
    # Not understood (the help that follows lists 退订 among the commands), not unsubscribed.
    assert "没看懂" in reply and "已为您退订" not in reply
    assert (await Member.get(follower__openid="o_p7")).marketing_opt_out_at is None


async def test_key_rotation_re_encrypts_while_lookups_keep_working(db_url, stand_ins, harness):
    await harness.register("o_p8", "13800138018")
    old_key = harness.config.security.data_key
    new_key = new_data_key()
    rotating = dataclasses.replace(harness.config.security, data_key=new_key,
                                   previous_keys=old_key)
    config = make_config(db_url, stand_ins).replace(
        security=rotating, wechat=harness.config.wechat)
    async with open_bot(config, scheduler=False) as bot:
        member = await Member.get(follower__openid="o_p8")
        # Before the rows are rewritten, the new-key worker still finds the member by phone.
        from bot.services import members

        assert (await members.find_by_phone(bot, "13800138018")).id == member.id
        assert await privacy.rotate_key(bot) == (1, 0)
        assert await privacy.rotate_key(bot) == (0, 1)  # a second run has nothing to do
        fresh = await Member.get(id=member.id)
        assert bot.vault.key_id_of(fresh.phone_enc) == bot.vault.key_id
        only_new = Vault(base64.b64decode(new_key))
        assert only_new.decrypt(fresh.phone_enc) == "13800138018"
        assert fresh.phone_hash == only_new.lookup_hash("13800138018")


@pytest.mark.parametrize("verb", ["update", "delete"])
async def test_the_audit_log_refuses_changes_in_the_database_itself(harness, verb):
    await audit(Actor.cli(await Store.get(code="S001")), "test", detail="kept")
    query = AuditEntry.filter(detail="kept")
    # tortoise wraps SQLite's abort; asyncpg's RAISE comes through as its own error.
    with pytest.raises((OperationalError, RaiseError), match="append-only"):
        await (query.update(detail="changed") if verb == "update" else query.delete())
    assert await AuditEntry.filter(detail="kept").count() == 1


async def test_follow_after_erasure_starts_a_fresh_registration(harness):
    await harness.register("o_p9", "13800138019")
    await _erase(harness, "o_p9", "13800138019")
    await harness.settle()
    greeting = await harness.post(wire.event("o_p9", "SCAN", "store:S002"))
    assert "同意" in greeting["Content"]
