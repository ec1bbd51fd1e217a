"""Following, unfollowing and scanning the store's QR codes."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.states import Registration
from bot.notifications.replies import Reply
from bot.services import members

router = Router("follow")


@router.event("subscribe")
async def subscribed(ctx: Context) -> Reply:
    scene = members.parse_scene(ctx.inbound.scene)
    _, returning = await members.follow(ctx.inbound.user, scene, ctx.now)
    if ctx.member:
        return ctx.reply("welcome_back.j2", member=ctx.member)
    return ctx.begin(Registration, returning=returning)


@router.event("scan")
async def scanned(ctx: Context) -> Reply:
    """An existing follower scanned a poster: a member is greeted, anyone else is invited."""
    await members.note_scan(ctx.inbound.user, members.parse_scene(ctx.inbound.scene))
    if ctx.member:
        return ctx.reply("already_member.j2", member=ctx.member)
    return ctx.begin(Registration, returning=False)


@router.event("unsubscribe")
async def unsubscribed(ctx: Context) -> None:
    # WeChat shows nothing after an unfollow; the member's data is kept.
    ctx.dialog.clear()
    await members.unfollow(ctx.inbound.user, ctx.now)


@router.event("view", "location_report", "template_finish", "other_event")
async def nothing_to_say(ctx: Context) -> None:
    """Events that need no answer ("success" tells WeChat so)."""
    return None
