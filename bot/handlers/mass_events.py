"""WeChat's MASSSENDJOBFINISH event (a mass send of a campaign is done): its counts go on the
campaign's mass job. Nothing to say back: "success"."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.services import campaigns

router = Router("mass_events")


def _count(ctx: Context, name: str) -> int:
    value = ctx.inbound.extra.get(name, "0")
    return int(value) if value.isdigit() else 0


@router.event("mass_finish")
async def mass_send_finished(ctx: Context) -> None:
    await campaigns.record_mass_job_finish(
        ctx.bot, _count(ctx, "msg_id"), status=ctx.inbound.extra.get("status", ""),
        total=_count(ctx, "total"), filtered=_count(ctx, "filtered"),
        sent=_count(ctx, "sent"), errors=_count(ctx, "errors"))
