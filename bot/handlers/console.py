"""The owner's console, from chat: scanning its login QR code (scene login:<nonce>) logs the
waiting browser in, scanning an invite's QR code (scene invite:<code>, shown on the staff
page) binds the scanner as 绑定 <code> would, and 退出后台 ends every console session of the
employee at once."""

from __future__ import annotations

import functools

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_text
from bot.infra.ratelimit import Limit
from bot.notifications.replies import Reply
from bot.services import console_auth, members
from bot.services import staff as staff_service
from bot.services.console_auth import ScanResult
from bot.services.staff import Actor

router = Router("console")
_staff_text = functools.partial(staff_text, on=router)
# Scanning codes one after another must not pay: a few an account every ten minutes.
SCAN_LIMIT = [Limit(10, 600)]


def _login_scene(ctx: Context) -> bool:
    return console_auth.login_nonce(ctx.inbound.scene) is not None


@router.when(_login_scene, kinds=("subscribe", "scan"))
async def scanned_login(ctx: Context) -> Reply:
    if ctx.inbound.kind == "subscribe":
        # Following through the login code still counts as following (no attribution).
        await members.follow(ctx.inbound.user, None, ctx.now)
    retry = await ctx.bot.limiter.hit({f"console_scan:{ctx.inbound.user}": SCAN_LIMIT},
                                      ctx.now)
    if retry:
        return ctx.reply("console_login_slow_down.j2", minutes=max(1, -(-retry // 60)))
    nonce = console_auth.login_nonce(ctx.inbound.scene) or ""
    scan = await console_auth.accept_scan(ctx.inbound.user, nonce, ctx.now)
    if scan.result is ScanResult.NOT_STAFF:
        return ctx.reply("console_login_not_staff.j2")
    if scan.result is ScanResult.ACCESS_ENDED:
        return ctx.reply("console_login_access_ended.j2")
    if scan.result is ScanResult.EXPIRED:
        return ctx.reply("console_login_expired.j2")
    local = ctx.now.astimezone(ctx.bot.config.shop.tz)
    return ctx.reply("console_login_ok.j2", browser=console_auth.browser_name(scan.user_agent),
                     time=local.strftime("%H:%M"))


def _invite_scene(ctx: Context) -> bool:
    return staff_service.invite_code(ctx.inbound.scene) is not None


@router.when(_invite_scene, kinds=("subscribe", "scan"))
async def scanned_invite(ctx: Context) -> Reply:
    """The new employee scans the invite's code: bound exactly as by 绑定 <code> (the same
    service, the same limit on tries), so a used or expired code is refused the same way."""
    if ctx.inbound.kind == "subscribe":
        await members.follow(ctx.inbound.user, None, ctx.now)
    if await ctx.bot.limiter.hit({f"bind:{ctx.inbound.user}": staff_service.BIND_LIMIT}, ctx.now):
        return ctx.reply("staff_bind_slow_down.j2")
    code = staff_service.invite_code(ctx.inbound.scene) or ""
    staff = await staff_service.bind(ctx.inbound.user, code, ctx.now) if code else None
    if staff is None:
        return ctx.reply("staff_bind_failed.j2")
    store = await staff.store
    return ctx.reply("staff_bound.j2", staff=staff, store=store,
                     role=staff_service.ROLE_NAMES[staff.role])


@_staff_text("退出后台", "退出登录")
async def console_logout(ctx: Context, actor: Actor) -> Reply:
    ended = await console_auth.end_all(actor.staff, actor.store, ctx.now)
    return ctx.reply("console_logout.j2", ended=ended)
