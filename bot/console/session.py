"""What every console request goes through: who is logged in (the session cookie), and, for
anything that changes something, the CSRF checks: the request must come from the console's
own origin (Sec-Fetch-Site, Origin) and carry the session's token (X-CSRF-Token, which
static/console.js adds to every htmx request, or a csrf_token form field)."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from bot.runtime import Bot
from bot.services import console_auth
from bot.services.console_auth import ConsoleUser

log = logging.getLogger("memberbot.console")

BOT_KEY = web.AppKey("console_bot_key", web.AppKey)
USER = web.RequestKey("console_user", ConsoleUser)
SESSION_COOKIE = "mb_console"
LOGIN_COOKIE = "mb_login"  # the waiting browser's claim on its QR login
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes that change something without a session yet: the one-time link's login button.
NO_SESSION_ROUTES = frozenset({"link_login"})


def bot_of(request: web.Request) -> Bot:
    return request.config_dict[request.app[BOT_KEY]]


def user_of(request: web.Request) -> ConsoleUser | None:
    return request.get(USER)


def secure(request: web.Request) -> bool:
    """Cookies are Secure behind HTTPS: a https base_url, or a request that came in over TLS."""
    return bot_of(request).config.console.base_url.startswith("https://") or request.secure


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path="/console", httponly=True, samesite="Lax",
                        secure=secure(request), max_age=max_age)


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/console", httponly=True, samesite="Lax",
                        secure=secure(request))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request) -> bool:
    """Fetch metadata when the browser sends it, and the Origin header when it does; a request
    with neither is not from a browser page of ours (they send Origin on every POST)."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is None and origin is None:
        return False
    if site is not None and site != "same-origin":
        return False
    if origin is not None:
        ours = {f"{request.scheme}://{request.host}".lower(),
                f"https://{request.host}".lower()}
        base = bot_of(request).config.console.base_url
        if base:
            ours.add(_origin(base))
        if origin.lower() not in ours:
            return False
    return True


def _refuse(request: web.Request, reason: str) -> web.Response:
    log.warning("console refused %s %s: %s (from %s)", request.method, request.path, reason,
                request.remote)
    return web.Response(status=403, text=reason)


async def _token_of(request: web.Request) -> str:
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        token = (await request.post()).get("csrf_token")
    return token if isinstance(token, str) else ""


@web.middleware
async def guard(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    if request.path.startswith("/console/static/"):
        return await handler(request)
    bot = bot_of(request)
    now = bot.now()
    unsafe = request.method not in SAFE_METHODS
    if unsafe and not same_origin(request):
        return _refuse(request, "cross-origin request refused")
    user = await console_auth.authenticate(
        request.cookies.get(SESSION_COOKIE, ""), now,
        dt.timedelta(minutes=bot.config.console.idle_minutes))
    request[USER] = user
    route = request.match_info.route.name
    if unsafe and route not in NO_SESSION_ROUTES:
        if user is None:
            # The session ended under an open page (退出后台 in chat, revoked, idle): a button
            # on it sends the browser to the login page instead of silently doing nothing.
            log.info("console: %s %s after the session ended", request.method, request.path)
            if request.headers.get("HX-Request"):
                return web.Response(status=401, text="not logged in",
                                    headers={"HX-Redirect": "/console/"})
            raise web.HTTPSeeOther("/console/")
        if not hmac.compare_digest(await _token_of(request), user.session.csrf_token):
            return _refuse(request, "missing or wrong CSRF token")
    response = await handler(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
