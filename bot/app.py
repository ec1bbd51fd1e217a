"""The aiohttp application factory: routes, start-up and shutdown. Nothing lives in module
globals, so tests can build as many apps as they like (one database at a time)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tortoise import connections

from bot.channels import sms as sms_channel
from bot.channels.wechat import Rejected, WeChatChannel
from bot.chat.dispatcher import Dispatcher
from bot.clock import utcnow
from bot.config import Config, validate_for_serving
from bot.console import create_console, redirect_to_console
from bot.handlers import build_router, faq
from bot.runtime import Bot, open_bot

log = logging.getLogger("memberbot.http")

BOT = web.AppKey("bot", Bot)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CHANNEL = web.AppKey("channel", WeChatChannel)


def create_app(config: Config, *, clock: Callable[[], dt.datetime] = utcnow) -> web.Application:
    validate_for_serving(config)
    router = build_router()
    faq.check_keywords(config.faq, router)  # a [[faq]] keyword that is a command: ConfigError
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app[CHANNEL] = WeChatChannel(config.wechat, config.server.max_clock_skew,
                                 clock=lambda: clock().timestamp())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with open_bot(config, clock) as bot:
            app[BOT] = bot
            app[DISPATCHER] = Dispatcher(bot, router)
            yield

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/wechat", verify_url)
    app.router.add_post("/wechat", receive_wechat)
    app.router.add_post("/sms/uplink", receive_sms_uplink)
    app.router.add_post("/sms/report", receive_sms_report)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/console", redirect_to_console)
    app.add_subapp("/console", create_console(BOT))
    return app


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    request.app[BOT].metrics.rejected.labels(str(status)).inc()
    log.warning("refused %s %s: %d %s (from %s)", request.method, request.path, status, reason,
                request.remote)
    return web.Response(status=status, text=reason)


async def _read_body(request: web.Request) -> bytes:
    limit = request.app[BOT].config.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, "body too large")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Rejected(413, "body too large") from None


async def verify_url(request: web.Request) -> web.Response:
    try:
        echostr = request.app[CHANNEL].verify_url(request.query)
    except Rejected as exc:
        return _refuse(request, exc.status, exc.reason)
    return web.Response(text=echostr)


async def receive_wechat(request: web.Request) -> web.Response:
    channel = request.app[CHANNEL]
    try:
        body = await _read_body(request)
        inbound, envelope = channel.open(request.query, body)
    except Rejected as exc:
        return _refuse(request, exc.status, exc.reason)
    reply = await request.app[DISPATCHER].feed(inbound)
    return web.Response(body=channel.render(reply, inbound, envelope),
                        content_type="application/xml" if reply else "text/plain")


async def receive_sms_uplink(request: web.Request) -> web.Response:
    try:
        sms_channel.check_push_token(request.app[BOT].config.sms, request.query)
        messages = sms_channel.parse_uplink(await _read_body(request))
    except Rejected as exc:
        return _refuse(request, exc.status, exc.reason)
    for inbound in messages:
        await request.app[DISPATCHER].feed(inbound)
    return web.json_response(sms_channel.ACK)


async def receive_sms_report(request: web.Request) -> web.Response:
    try:
        sms_channel.check_push_token(request.app[BOT].config.sms, request.query)
        reports = sms_channel.parse_reports(await _read_body(request))
    except Rejected as exc:
        return _refuse(request, exc.status, exc.reason)
    for report in reports:
        await request.app[BOT].outbox.record_sms_report(report.out_id, report.delivered,
                                                        report.err_code)
    return web.json_response(sms_channel.ACK)


async def healthz(request: web.Request) -> web.Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as exc:
        log.error("health check failed: %s", exc)
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[BOT].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
