"""员工: who runs the shop, invites with a QR code, revoking, roles.

An owner manages everyone; a manager their own store's clerks only (they invite clerks to
their store and revoke them; roles are the owner's). Another store's employee answers 404,
a colleague a manager may not manage 403, and nobody acts on themselves here. Everything
goes through bot/services/staff.py, as `memberbot staff` does, and is audited as this user:

- invite: create_invite with a code derived from a nonce in the form, so a double submit or
  a reload shows the same invite instead of making two. The page shows the code and a QR code
  (scene invite:<code>) the new employee scans with WeChat (bot/handlers/console.py binds them).
- revoke: their chat commands stop and every console session they have ends at once.
- role: set_role; their console sessions, opened with the old role, end at once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from tortoise.functions import Max

from bot.console import auth, query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.models import ConsoleSession, Staff, Store
from bot.models.staff import ROLES, Role
from bot.notifications.wechat_api import WeChatAPIError
from bot.services import staff as staff_service
from bot.services.console_auth import ConsoleUser

routes = web.RouteTableDef()


def assignable(user: ConsoleUser) -> tuple[Role, ...]:
    """The roles this user may give: an owner any, a manager clerk only."""
    return ROLES if user.role == Role.OWNER else (Role.CLERK,)


def manages(user: ConsoleUser, staff: Staff) -> bool:
    """Whether this user may revoke or change this employee (who is in their sight)."""
    if staff.id == user.staff.id:
        return False
    return user.role == Role.OWNER or staff.role == Role.CLERK


async def _target(request: web.Request, user: ConsoleUser) -> Staff:
    """The employee the URL names: 404 outside the user's sight (another store's, or none),
    403 for one they may see but not manage."""
    staff_id = query.id_in_path(request, "staff_id")
    staff = await Staff.get_or_none(id=staff_id).select_related("store")
    if staff is None or (user.role != Role.OWNER and staff.store_id != user.store.id):
        raise web.HTTPNotFound(text="no such employee")
    if not manages(user, staff):
        raise web.HTTPForbidden(text="you may not change this employee")
    return staff


@dataclass(frozen=True)
class Row:
    staff: Staff
    last_login: dt.datetime | None  # when their newest console session began
    manageable: bool


async def _rows(user: ConsoleUser, staff: list[Staff]) -> list[Row]:
    ids = [s.id for s in staff]
    last = dict(await ConsoleSession.filter(staff_id__in=ids).group_by("staff_id")
                .annotate(last=Max("created_at")).values_list("staff_id", "last")) if ids else {}
    return [Row(s, last.get(s.id), manages(user, s)) for s in staff]


async def _list(user: ConsoleUser) -> list[Staff]:
    found = Staff.all().order_by("-active", "store_id", "id").select_related("store")
    if user.role != Role.OWNER:
        found = found.filter(store_id=user.store.id)
    return list(await found)


def _context(user: ConsoleUser, request: web.Request) -> dict:
    tz = bot_of(request).config.shop.tz
    return {"tz": tz, "roles": assignable(user), "role_names": staff_service.ROLE_NAMES,
            "nonce": secrets.token_urlsafe(16), "owner": user.role == Role.OWNER}


@routes.get("/staff", name="staff")
async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    return render(request, "staff.j2", {
        **_context(user, request), "rows": await _rows(user, await _list(user)),
        "stores": await query.stores_for(user)})


@routes.post("/staff/invite", name="staff_invite")
async def invite(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    form = await request.post()
    role, name, nonce = (str(form.get(k, "")).strip() for k in ("role", "name", "nonce"))
    store_code = str(form.get("store", "")).strip() or user.store.code
    if role not in assignable(user):
        raise web.HTTPForbidden(text="you may not invite this role")
    if user.role != Role.OWNER and store_code != user.store.code:
        raise web.HTTPNotFound(text="no such store")
    store = await Store.get_or_none(code=store_code)
    if store is None:
        raise web.HTTPNotFound(text="no such store")
    if not nonce or len(nonce) > 64:
        raise web.HTTPBadRequest(text="the form is missing its nonce: reload the page")
    name = name[:32]
    # The same form sent again (a double tap, a reload) names the same code: one invite.
    code = staff_service.invite_code_for(user.session.csrf_token, nonce)
    code = await staff_service.create_invite(store.code, role, name, bot.now(),
                                             actor=user.actor, code=code)
    scene = staff_service.invite_scene(code)
    seconds = int(staff_service.INVITE_TTL.total_seconds())
    qr, error = None, ""
    try:
        made = await bot.wechat.create_qrcode(scene, temporary=True, expire_seconds=seconds)
        qr = auth.qr_png(made["url"])
    except (WeChatAPIError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
        error = str(exc) or type(exc).__name__
    sandbox = bot.config.wechat.api_base_url.rstrip("/") != auth.REAL_WECHAT
    return render(request, "staff_invite.j2", {
        "code": code, "qr": qr, "error": error, "store": store, "name": name,
        "invite_role": staff_service.ROLE_NAMES[role], "hours": seconds // 3600,
        "scene": scene if sandbox else None})


async def _row(request: web.Request, user: ConsoleUser, staff_id: int, message: str = "",
               ) -> web.StreamResponse:
    staff = await Staff.get(id=staff_id).select_related("store")
    (row,) = await _rows(user, [staff])
    return render(request, "_staff_row.j2", {**_context(user, request), "row": row,
                                             "message": message})


@routes.post("/staff/{staff_id}/revoke", name="staff_revoke")
async def revoke(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    staff = await _target(request, user)
    done = await staff_service.revoke(staff.id, bot_of(request).now(), actor=user.actor)
    return await _row(request, user, staff.id, "已停用，后台登录已全部退出" if done else "已停用")


@routes.post("/staff/{staff_id}/role", name="staff_role")
async def set_role(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    staff = await _target(request, user)
    role = str((await request.post()).get("role", ""))
    if role not in assignable(user):
        raise web.HTTPForbidden(text="you may not give this role")
    if not staff.active:
        raise web.HTTPConflict(text="this employee was revoked: invite them again")
    done = await staff_service.set_role(staff.id, role, bot_of(request).now(),
                                        actor=user.actor)
    return await _row(request, user, staff.id,
                      "角色已更改，后台登录已全部退出" if done else "角色未变")
