"""群发 in chat, for managers: `群发 <分群> <模板名或文字>` makes a campaign and shows its preview
(the text a sample member reads, the counts per channel, how many can still get a WeChat mass
message this month); 确认 starts it, 取消 cancels it. How the segment and the message are told
apart is in bot/rules/broadcast.py. The campaign itself (who, by which channel, once) is the
campaigns service's, the same the CLI's `memberbot broadcast` uses."""

from __future__ import annotations

import contextlib
import functools

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_answering
from bot.chat.staff_commands import staff_command as _staff_command
from bot.chat.states import BroadcastConfirm
from bot.models import Campaign
from bot.notifications.replies import Reply
from bot.rules import broadcast as request_rule
from bot.services import campaigns
from bot.services.staff import Actor

router = Router("broadcast")
staff_command = functools.partial(_staff_command, on=router)

USAGE = "群发 <分群> <模板名或文字>"
CHANNEL_NAMES = {"wechat": "公众号群发", "sms": "短信", "none": "无法送达（未关注、也没有手机号）"}
STATE_NAMES = {"draft": "草稿，还没开始", "scheduled": "已排期", "running": "发送中",
               "paused": "已暂停", "stale": "错过了排期，等店长确认", "done": "已发完",
               "cancelled": "已取消"}


SKIP_REASONS = {"holdout": "对照组", "opted_out": "已退订", "erased": "已注销",
                "cancelled": "群发已取消", "mass_cap": "本月群发已满且不发短信",
                "not_following": "未关注且不发短信", "no_phone": "没有手机号",
                "single_openid": "只有一位粉丝无法群发且不发短信",
                "no_coupon": "优惠券已发完", "no_sms_template": "未配置营销短信模板"}
PROGRESS_USAGE = "群发进度 <编号>"
RELEASE_USAGE = "群发放行 <编号>"
STOP_USAGE = "群发取消 <编号>"


def _refused(ctx: Context, exc: campaigns.CampaignError, **values) -> Reply:
    """The refusal in Chinese: each reason has its sentence, from what the error carries."""
    return ctx.reply("broadcast_refused.j2", reason=exc.reason, states=STATE_NAMES,
                     **{**exc.values, **values})


@staff_command("群发", action="broadcast", usage=USAGE, args=(0, 1))
async def broadcast(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    tiers = [tier.name for tier in ctx.bot.config.tiers]
    wanted = request_rule.split(parts[0], tiers) if parts else None
    if wanted is None:
        return ctx.reply("broadcast_usage.j2", text=parts[0] if parts else "")
    try:
        campaign = await campaigns.create(ctx.bot, segment=wanted.segment,
                                          template=wanted.template, text=wanted.text,
                                          staff_id=actor.staff.id)
        preview = await campaigns.preview(ctx.bot, campaign.id)
    except campaigns.CampaignError as exc:
        return _refused(ctx, exc)
    if preview.total == 0:
        # Nobody to send to: no draft left lying around, no question to answer.
        await campaigns.cancel(ctx.bot, campaign.id, staff_id=actor.staff.id)
        return ctx.reply("broadcast_empty.j2", segment=campaign.segment)
    ctx.dialog.set(BroadcastConfirm.confirm, campaign_id=campaign.id, total=preview.total)
    return ctx.reply("broadcast_preview.j2", campaign=campaign, preview=preview,
                     channels=CHANNEL_NAMES, cap=ctx.bot.config.broadcast.mass_monthly_cap)


def _number(text: str) -> int | None:
    """A campaign's number as typed: 12, #12, 第12号."""
    number = text.lstrip("#第").removesuffix("号")
    if not number.isascii() or not number.isdigit() or len(number) > 9:
        return None
    return int(number)


@staff_command("群发进度", action="broadcast", usage=PROGRESS_USAGE, args=(1, 1))
async def progress(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    """How a campaign is going, for a manager away from the shell: the same numbers as
    `memberbot broadcast status`; a stale one says how to let it go or drop it."""
    number = _number(parts[0])
    if number is None:
        return ctx.reply("staff_usage.j2", usage=PROGRESS_USAGE)
    try:
        status = await campaigns.status(ctx.bot, number)
    except campaigns.CampaignError as exc:
        return _refused(ctx, exc)
    return ctx.reply("broadcast_status.j2", status=status, states=STATE_NAMES,
                     reasons=SKIP_REASONS, tz=ctx.bot.config.shop.tz)


async def _move(ctx: Context, actor: Actor, number_text: str, usage: str, move,
                template: str) -> Reply:
    """A manager's move on a campaign by its number (release, cancel): the service decides."""
    number = _number(number_text)
    if number is None:
        return ctx.reply("staff_usage.j2", usage=usage)
    try:
        campaign = await move(ctx.bot, number, staff_id=actor.staff.id)
    except campaigns.CampaignError as exc:
        return _refused(ctx, exc)
    return ctx.reply(template, campaign=campaign)


@staff_command("群发放行", action="broadcast", usage=RELEASE_USAGE, args=(1, 1))
async def release(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    """A scheduled campaign the server missed (stale) goes out now after all: the CLI's
    `memberbot broadcast confirm`."""
    return await _move(ctx, actor, parts[0], RELEASE_USAGE, campaigns.confirm_stale,
                       "broadcast_released.j2")


@staff_command("群发取消", action="broadcast", usage=STOP_USAGE, args=(1, 1))
async def stop(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    """Nothing more of a campaign goes out (a stale one, or one still sending): the CLI's
    `memberbot broadcast cancel`."""
    return await _move(ctx, actor, parts[0], STOP_USAGE, campaigns.cancel,
                       "broadcast_stopped.j2")


@router.question_values(BroadcastConfirm)
def _question(ctx: Context) -> dict:
    return {"campaign_id": ctx.dialog.data.get("campaign_id"),
            "total": ctx.dialog.data.get("total", 0)}


@router.text("确认", "确定", "是", "开始", state=BroadcastConfirm.confirm)
async def confirmed(ctx: Context) -> Reply:
    data, actor, refusal = await staff_answering(ctx, "broadcast", USAGE)
    if refusal is not None:
        return refusal
    try:
        campaign = await campaigns.start(ctx.bot, data["campaign_id"], staff_id=actor.staff.id)
    except campaigns.CampaignError as exc:
        # Moved meanwhile (cancelled from the shell, say): tell what it is now.
        found = await Campaign.get_or_none(id=data["campaign_id"])
        return _refused(ctx, exc, status=found.status if found else "")
    return ctx.reply("broadcast_started.j2", campaign=campaign, total=data.get("total", 0))


@router.text(*commands.CANCEL.words, state=BroadcastConfirm.confirm)
async def cancelled(ctx: Context) -> Reply:
    """取消 ends the dialog as everywhere, and the draft it made is cancelled too, so it cannot
    be started later by mistake."""
    data = dict(ctx.dialog.data)
    ctx.dialog.clear()
    await _drop_draft(ctx, data)
    return ctx.reply(BroadcastConfirm.cancelled)


@router.dropped(BroadcastConfirm)
async def _drop_draft(ctx: Context, data: dict) -> None:
    """The draft of a preview left unanswered (取消, or another 群发 asked in its place)."""
    campaign_id = data.get("campaign_id")
    found = await ctx.staff_account()  # a revoked account may still drop its own draft
    if campaign_id is not None and found is not None:
        # Already cancelled or gone: nothing will be sent either way.
        with contextlib.suppress(campaigns.CampaignError):
            await campaigns.cancel(ctx.bot, campaign_id, staff_id=found[0].id)


@router.message(state=BroadcastConfirm.confirm)
async def unclear(ctx: Context) -> Reply:
    return ctx.ask(BroadcastConfirm.confirm)
