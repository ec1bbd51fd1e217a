"""Logging in: the QR page the browser waits on (polling with htmx until the code is scanned),
the one-time link, and logging out."""

from __future__ import annotations

import base64
import io

import aiohttp
import aiohttp_jinja2
import qrcode
from aiohttp import web

from bot.console.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    bot_of,
    clear_cookie,
    set_cookie,
    user_of,
)
from bot.infra.ratelimit import Limit
from bot.notifications.wechat_api import WeChatAPIError
from bot.services import console_auth
from bot.services.console_auth import NewSession, Poll

# New QR codes and link logins per client address: each QR code is a WeChat API call.
QR_LIMIT = [Limit(10, 60), Limit(60, 3600)]
LINK_LIMIT = [Limit(10, 600)]
REAL_WECHAT = "https://api.weixin.qq.com"
routes = web.RouteTableDef()


def _agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


def qr_png(text: str) -> str:
    """The code as a PNG data URI: an <img>, so that in WeChat's own browser on the phone a
    long press (识别图中二维码) scans it too, which an inline SVG would not allow."""
    image = qrcode.make(text, box_size=8, border=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def _logged_in(request: web.Request, new: NewSession, response: web.StreamResponse
                     ) -> web.StreamResponse:
    """A new session id at every login (the one the browser had ends); the pending login's
    cookie goes."""
    await console_auth.replace(request.cookies.get(SESSION_COOKIE, ""), bot_of(request).now())
    set_cookie(request, response, SESSION_COOKIE, new.token)
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """A fresh temporary QR code with scene login:<nonce>, valid two minutes."""
    bot = bot_of(request)
    now = bot.now()
    if await bot.limiter.hit({f"console_qr:{request.remote}": QR_LIMIT}, now):
        return aiohttp_jinja2.render_template("login.j2", request, {"slow": True}, status=429)
    pending = await console_auth.start_qr_login(_agent(request), now)
    seconds = int(console_auth.QR_TTL.total_seconds())
    try:
        code = await bot.wechat.create_qrcode(pending.scene, temporary=True,
                                              expire_seconds=seconds)
    except (WeChatAPIError, aiohttp.ClientError, TimeoutError) as exc:
        return aiohttp_jinja2.render_template("login.j2", request, {"error": str(exc)},
                                              status=502)
    sandbox = bot.config.wechat.api_base_url.rstrip("/") != REAL_WECHAT
    response = aiohttp_jinja2.render_template("login.j2", request, {
        "qr": qr_png(code["url"]), "minutes": seconds // 60,
        "scene": pending.scene if sandbox else None})
    set_cookie(request, response, LOGIN_COOKIE, pending.browser_secret, max_age=seconds + 60)
    return response


@routes.get("/login/poll", name="poll")
async def poll(request: web.Request) -> web.StreamResponse:
    """htmx asks every two seconds: 204 while waiting (nothing to swap), a redirect home once
    the code was scanned, the expired notice (which stops the polling) otherwise."""
    bot = bot_of(request)
    secret = request.cookies.get(LOGIN_COOKIE, "")
    result = (await console_auth.collect(secret, _agent(request), bot.now()) if secret
              else Poll.EXPIRED)
    if result is Poll.WAITING:
        return web.Response(status=204)
    if result is Poll.EXPIRED:
        return aiohttp_jinja2.render_template("_expired.j2", request, {})
    response = web.Response(status=200, headers={"HX-Redirect": "/console/"})
    return await _logged_in(request, result, response)


@routes.get("/login/{nonce}", name="link")
async def link_page(request: web.Request) -> web.StreamResponse:
    """The link only shows a button: a link preview or a scanner fetching it logs nobody in."""
    valid = await console_auth.link_valid(request.match_info["nonce"], bot_of(request).now())
    return aiohttp_jinja2.render_template("link.j2", request, {"valid": valid},
                                          status=200 if valid else 410)


@routes.post("/login/{nonce}", name="link_login")
async def link_login(request: web.Request) -> web.StreamResponse:
    bot = bot_of(request)
    now = bot.now()
    if await bot.limiter.hit({f"console_link:{request.remote}": LINK_LIMIT}, now):
        return aiohttp_jinja2.render_template("link.j2", request, {"slow": True}, status=429)
    new = await console_auth.use_link(request.match_info["nonce"], _agent(request), now)
    if new is None:
        return aiohttp_jinja2.render_template("link.j2", request, {"valid": False}, status=410)
    return await _logged_in(request, new, _see_other("/console/"))


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    user = user_of(request)
    if user is not None:
        await console_auth.logout(user, bot_of(request).now())
    response = (web.Response(status=200, headers={"HX-Redirect": "/console/"})
                if request.headers.get("HX-Request") else _see_other("/console/"))
    clear_cookie(request, response, SESSION_COOKIE)
    return response
