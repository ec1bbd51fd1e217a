"""What every console page shares: who may open it (checked on each request, not only by
hiding the menu), the store a user's queries are scoped to, the menu, and rendering with the
layout's context (the user, their role's name, the CSRF token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bot.console.session import user_of
from bot.models.staff import ROLES, Role
from bot.services.console_auth import ConsoleUser
from bot.services.staff import ROLE_NAMES


@dataclass(frozen=True)
class MenuItem:
    path: str  # under /console
    label: str
    least: Role = Role.CLERK


def at_least(role: str, least: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(least)


def store_scope(user: ConsoleUser) -> int | None:
    """The store whose rows a user sees: None (every store) for an owner."""
    return None if user.role == Role.OWNER else user.store.id


def require(request: web.Request, least: Role = Role.CLERK) -> ConsoleUser:
    """The logged-in user, if their role reaches `least`: 401 without a session (htmx sends
    the browser to the login page), 403 for a role below."""
    user = user_of(request)
    if user is None:
        if request.headers.get("HX-Request"):
            raise web.HTTPUnauthorized(text="not logged in", headers={"HX-Redirect": "/console/"})
        raise web.HTTPFound("/console/")
    if not at_least(user.role, least):
        raise web.HTTPForbidden(text="your role may not open this page")
    return user


def yuan(fen: int | None) -> str:
    return "—" if fen is None else f"¥{fen / 100:,.2f}"


def pct(change: float | None) -> str:
    if change is None:
        return "—"
    return f"{'+' if change > 0 else ''}{change * 100:.1f}%"


FILTERS = {"yuan": yuan, "pct": pct}


def menu_for(user: ConsoleUser, items: tuple[MenuItem, ...]) -> list[MenuItem]:
    return [item for item in items if at_least(user.role, item.least)]


def render(request: web.Request, template: str, context: Mapping[str, Any], *,
           status: int = 200) -> web.Response:
    """A page or fragment with the layout's context: the user, their role's name, the CSRF
    token and the menu their role sees, and the path of the page (the menu marks it)."""
    from bot.console import MENU  # the menu is the app's table of pages

    user = user_of(request)
    base: dict[str, Any] = {"path": request.path}
    if user is not None:
        base |= {"user": user, "role_name": ROLE_NAMES[user.role],
                 "csrf": user.session.csrf_token, "menu": menu_for(user, MENU),
                 "all_stores": store_scope(user) is None}
    return aiohttp_jinja2.render_template(template, request, base | dict(context),
                                          status=status)
