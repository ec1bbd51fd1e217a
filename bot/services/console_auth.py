"""Logging in to the owner's console: a QR code a bound employee scans with WeChat, or a
one-time link from `memberbot console link`; server-side sessions that end at 退出后台, at
`memberbot staff revoke`, at a change of role or store, and after [console] idle_minutes.

The webhook's handler (bot/handlers/console.py) and the console's pages (bot/console/) both
come here, so a scan and the browser waiting for it meet in the database, whichever worker
takes either. Every secret is stored only as its SHA-256: the nonce in the QR scene or the
link, the browser's claim on its pending login, the session cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from tortoise.transactions import in_transaction

from bot.models import ConsoleSession, LoginNonce, Staff, Store
from bot.services.staff import Actor, audit

QR_TTL = dt.timedelta(minutes=2)
LINK_TTL = dt.timedelta(minutes=10)
# last_seen_at is written at most this often: a page and its polls do not each cost a write.
TOUCH_EVERY = dt.timedelta(seconds=60)
LOGIN_PREFIX = "login:"
_NONCE_RE = re.compile(r"[A-Za-z0-9_\-]{16,58}")  # a scene_str is at most 64 characters


def _secret() -> str:
    return secrets.token_urlsafe(24)  # 32 characters


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def login_nonce(scene: str | None) -> str | None:
    """The nonce of a login QR code's scene (login:<nonce>), or None for any other scene."""
    if not scene or not scene.startswith(LOGIN_PREFIX):
        return None
    nonce = scene[len(LOGIN_PREFIX):]
    return nonce if _NONCE_RE.fullmatch(nonce) else ""


def browser_name(user_agent: str) -> str:
    """What the employee is told logged in: 微信, Edge, Chrome, Firefox, Safari or 浏览器."""
    for marker, name in (("MicroMessenger", "微信"), ("Edg/", "Edge"), ("Chrome/", "Chrome"),
                         ("CriOS/", "Chrome"), ("Firefox/", "Firefox"), ("Safari/", "Safari")):
        if marker in user_agent:
            return name
    return "浏览器"


# --- the QR code ---

@dataclass(frozen=True)
class PendingLogin:
    nonce: str  # goes into the QR scene
    browser_secret: str  # goes into the waiting browser's cookie
    expires_at: dt.datetime

    @property
    def scene(self) -> str:
        return LOGIN_PREFIX + self.nonce


async def start_qr_login(user_agent: str, now: dt.datetime) -> PendingLogin:
    nonce, browser = _secret(), _secret()
    expires = now + QR_TTL
    await LoginNonce.create(nonce_hash=digest(nonce), kind="qr", browser_hash=digest(browser),
                            user_agent=user_agent[:255], expires_at=expires)
    return PendingLogin(nonce, browser, expires)


class ScanResult(StrEnum):
    OK = "ok"
    NOT_STAFF = "not_staff"
    ACCESS_ENDED = "access_ended"
    EXPIRED = "expired"  # unknown, expired or already used: a fresh code is needed


@dataclass(frozen=True)
class Scan:
    result: ScanResult
    user_agent: str = ""


async def accept_scan(openid: str, nonce: str, now: dt.datetime) -> Scan:
    """A WeChat account scanned login:<nonce>. Only active staff log a browser in; a nonce
    is accepted once (a conditional update, so two scans at once cannot both)."""
    staff = await Staff.get_or_none(openid=openid)
    if staff is None:
        return Scan(ScanResult.NOT_STAFF)
    if not staff.active:
        return Scan(ScanResult.ACCESS_ENDED)
    row = await LoginNonce.get_or_none(nonce_hash=digest(nonce), kind="qr")
    if row is None or row.used_at is not None or row.expires_at <= now:
        return Scan(ScanResult.EXPIRED)
    if not await LoginNonce.filter(id=row.id, used_at=None, expires_at__gt=now).update(
            used_at=now, staff_id=staff.id):
        return Scan(ScanResult.EXPIRED)
    return Scan(ScanResult.OK, row.user_agent)


class Poll(StrEnum):
    WAITING = "waiting"
    EXPIRED = "expired"  # unknown, expired or collected: show a new code


async def collect(browser_secret: str, user_agent: str, now: dt.datetime
                  ) -> NewSession | Poll:
    """The waiting browser asks whether its code was scanned: a new session once it was."""
    row = await LoginNonce.get_or_none(browser_hash=digest(browser_secret), kind="qr")
    if row is None or row.claimed_at is not None:
        return Poll.EXPIRED
    if row.used_at is None:
        return Poll.EXPIRED if row.expires_at <= now else Poll.WAITING
    if row.used_at <= now - QR_TTL:
        return Poll.EXPIRED  # scanned long ago and never collected: the browser went away
    if not await LoginNonce.filter(id=row.id, claimed_at=None).update(claimed_at=now):
        return Poll.EXPIRED
    return await open_session(row.staff_id, user_agent, now, via="qr") or Poll.EXPIRED


# --- the one-time link ---

async def create_link(staff_id: int, now: dt.datetime) -> str:
    """A nonce for /console/login/<nonce>: logs this employee in once, within LINK_TTL."""
    staff = await Staff.get_or_none(id=staff_id, active=True).select_related("store")
    if staff is None:
        raise LookupError(f"no active staff with id {staff_id}")
    nonce = _secret()
    async with in_transaction():
        await LoginNonce.create(nonce_hash=digest(nonce), kind="link", staff=staff,
                                expires_at=now + LINK_TTL)
        await audit(Actor.cli(staff.store), "console_link", detail=f"staff:{staff.id}")
    return nonce


async def link_valid(nonce: str, now: dt.datetime) -> bool:
    return await LoginNonce.exists(nonce_hash=digest(nonce), kind="link", used_at=None,
                                   expires_at__gt=now)


async def use_link(nonce: str, user_agent: str, now: dt.datetime) -> NewSession | None:
    row = await LoginNonce.get_or_none(nonce_hash=digest(nonce), kind="link")
    if row is None or not await LoginNonce.filter(
            id=row.id, used_at=None, expires_at__gt=now).update(used_at=now, claimed_at=now):
        return None
    return await open_session(row.staff_id, user_agent, now, via="link")


# --- sessions ---

@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value; only its hash is kept
    session: ConsoleSession


async def open_session(staff_id: int, user_agent: str, now: dt.datetime, *,
                       via: str) -> NewSession | None:
    """A new session id at every login, with its own CSRF token."""
    staff = await Staff.get_or_none(id=staff_id, active=True).select_related("store")
    if staff is None:
        return None
    token = secrets.token_urlsafe(32)
    async with in_transaction():
        session = await ConsoleSession.create(
            token_hash=digest(token), csrf_token=secrets.token_urlsafe(32), staff=staff,
            role=staff.role, store=staff.store, user_agent=user_agent[:255], created_at=now,
            last_seen_at=now)
        await audit(Actor.of(staff, staff.store), "console_login",
                    detail=f"via={via} session={session.id} {browser_name(user_agent)}")
    return NewSession(token, session)


@dataclass(frozen=True)
class ConsoleUser:
    """Who is using the console: the session, its employee, and the store they act in."""

    session: ConsoleSession
    staff: Staff
    store: Store

    @property
    def role(self) -> str:
        return self.session.role

    @property
    def actor(self) -> Actor:
        return Actor.of(self.staff, self.store)


async def authenticate(token: str, now: dt.datetime, idle: dt.timedelta) -> ConsoleUser | None:
    """The session behind a cookie, if it is still open. It ends here when idle too long, or
    when its employee was revoked or given another role or store since it began."""
    if not token:
        return None
    session = await ConsoleSession.get_or_none(token_hash=digest(token), ended_at=None
                                               ).select_related("staff", "store")
    if session is None:
        return None
    staff = session.staff
    reason = ("idle" if session.last_seen_at <= now - idle else
              "revoked" if not staff.active else
              "role_changed" if (staff.role, staff.store_id) != (session.role, session.store_id)
              else "")
    if reason:
        await ConsoleSession.filter(id=session.id, ended_at=None).update(ended_at=now,
                                                                         end_reason=reason)
        return None
    if now - session.last_seen_at >= TOUCH_EVERY:
        await ConsoleSession.filter(id=session.id).update(last_seen_at=now)
    return ConsoleUser(session, staff, session.store)


async def logout(user: ConsoleUser, now: dt.datetime) -> None:
    async with in_transaction():
        if await ConsoleSession.filter(id=user.session.id, ended_at=None).update(
                ended_at=now, end_reason="logout"):
            await audit(user.actor, "console_logout", detail=f"session={user.session.id}")


async def replace(token: str, now: dt.datetime) -> None:
    """A browser logging in again: the session its old cookie named ends (the new one has a
    new id, so a session id planted before the login is worth nothing after it)."""
    if token:
        await ConsoleSession.filter(token_hash=digest(token), ended_at=None).update(
            ended_at=now, end_reason="replaced")


async def end_all(staff: Staff, store: Store, now: dt.datetime) -> int:
    """退出后台 from chat: every console session of this employee ends at once."""
    async with in_transaction():
        ended = await ConsoleSession.end_all(staff.id, now, "chat_logout")
        if ended:
            await audit(Actor.of(staff, store), "console_logout", detail=f"sessions={ended}")
    return ended
