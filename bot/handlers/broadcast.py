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
STATE_NAMES = {"draft": "是草稿", "scheduled": "已排期", "running": "在发送中",
               "paused": "已暂停", "stale": "已错过排期", "done": "发送完毕",
               "cancelled": "取消"}


def _refused(ctx: Context, exc: campaigns.CampaignError, **values) -> Reply:
    return ctx.reply("broadcast_refused.j2", reason=exc.reason, detail=str(exc),
                     states=STATE_NAMES, **values)


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
        return _refused(ctx, exc, template=wanted.template)
    ctx.dialog.set(BroadcastConfirm.confirm, campaign_id=campaign.id, total=preview.total)
    return ctx.reply("broadcast_preview.j2", campaign=campaign, preview=preview,
                     channels=CHANNEL_NAMES, cap=ctx.bot.config.broadcast.mass_monthly_cap)


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
    campaign_id = ctx.dialog.data.get("campaign_id")
    ctx.dialog.clear()
    found = await ctx.staff_account()  # a revoked account may still drop its own draft
    if campaign_id is not None and found is not None:
        # Already cancelled or gone: nothing will be sent either way.
        with contextlib.suppress(campaigns.CampaignError):
            await campaigns.cancel(ctx.bot, campaign_id, staff_id=found[0].id)
    return ctx.reply(BroadcastConfirm.cancelled)


@router.message(state=BroadcastConfirm.confirm)
async def unclear(ctx: Context) -> Reply:
    return ctx.ask(BroadcastConfirm.confirm)
