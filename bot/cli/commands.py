"""What the CLI's subcommands do, apart from argument parsing."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import multiprocessing
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.clock import local_midnight
from bot.config import Config, ConfigError, CouponTemplateConfig, validate_coupon
from bot.infra.db import close_database, open_database
from bot.infra.paging import batches
from bot.models import AuditEntry, CouponTemplate, Member, Staff, Store
from bot.notifications.poster import render_poster
from bot.notifications.wechat_api import WeChatAPI, WeChatAPIError
from bot.rules import earning
from bot.runtime import open_bot
from bot.services import coupons, members, privacy, purchases
from bot.services import staff as staff_service
from bot.services.staff import Actor

log = logging.getLogger("memberbot")

MAX_TEMPORARY_EXPIRE = 2_592_000  # 30 days, WeChat's limit


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def serve(config: Config, workers: int = 1) -> int:
    """The webhook. With several workers, each is a process listening on the same port
    (SO_REUSEPORT: the kernel spreads connections); they share everything through the
    database (and Redis, if configured), so any worker can take any message."""
    if workers <= 1:
        _serve_one(config, reuse_port=False)
        return 0
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_serve_one, args=(config, True), name=f"worker-{i}")
                 for i in range(workers)]
    for process in processes:
        process.start()

    def stop(signum, frame) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    return max((p.exitcode or 0 for p in processes), default=0)


def _serve_one(config: Config, reuse_port: bool) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("memberbot listening on http://%s:%d/wechat", config.server.host, config.server.port)
    web.run_app(create_app(config), host=config.server.host, port=config.server.port,
                access_log=None, print=None, reuse_port=reuse_port)


@contextlib.asynccontextmanager
async def wechat_api(config: Config) -> AsyncIterator[WeChatAPI]:
    """The API client with the database open (the access token is shared through it)."""
    if not (config.wechat.app_id and config.wechat.app_secret):
        raise ConfigError("wechat.app_id and wechat.app_secret are needed to call WeChat")
    await open_database(config.database.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            yield WeChatAPI(session, config.wechat)
    finally:
        await close_database()


def menu_payload(config: Config) -> dict[str, Any]:
    buttons = config.menu.get("button")
    if not buttons:
        raise ConfigError("menu.button: no [[menu.button]] entries in the config")
    return {"button": buttons}


async def menu(config: Config, action: str) -> int:
    payload = menu_payload(config)
    if action == "show":
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    async with wechat_api(config) as api:
        try:
            await api.create_menu(payload)
        except WeChatAPIError as exc:
            print(f"WeChat refused the menu: {exc}")
            return 1
    print(f"Menu published: {len(payload['button'])} buttons. "
          "WeChat clients show it within a few minutes (re-follow to see it at once).")
    return 0


async def qrcode(config: Config, scene: str, output: Path, temporary: bool, expire: int,
                 caption: str | None) -> int:
    parsed = members.parse_scene(scene)
    if parsed is None:
        print("--scene must look like store:S001, staff:<id> or ref:<card_no> (at most 64 "
              "characters, letters, digits, _ and -)")
        return 2
    if temporary and not 60 <= expire <= MAX_TEMPORARY_EXPIRE:
        print(f"--expire must be between 60 and {MAX_TEMPORARY_EXPIRE} seconds (30 days)")
        return 2
    async with wechat_api(config) as api:
        try:
            result = await api.create_qrcode(scene, temporary=temporary, expire_seconds=expire)
        except WeChatAPIError as exc:
            print(f"WeChat refused the QR code: {exc}")
            return 1
        if caption is None:
            store = await Store.get_or_none(code=parsed.value) if parsed.kind == "store" else None
            caption = f"{store.name if store else config.shop.name} 扫码加入会员"
    subcaption = ""
    if temporary:
        days, hours = divmod(expire // 3600, 24)
        subcaption = f"{days} 天内有效" if days >= 2 else f"{days * 24 + hours or 1} 小时内有效"
    png = await asyncio.to_thread(render_poster, result["url"], caption, subcaption)
    await asyncio.to_thread(_write, output, png)
    kind = f"temporary ({expire} s)" if temporary else "permanent"
    print(f"Wrote {output}: {kind} QR code for scene {scene}")
    return 0


async def worker(config: Config) -> int:
    """The scheduler alone, without the webhook (for a separate worker process)."""
    async with open_bot(config, scheduler=True):
        log.info("memberbot worker running its scheduled jobs; Ctrl+C to stop")
        await asyncio.Event().wait()
    return 0


async def staff_invite(config: Config, store: str, role: str, name: str) -> int:
    async with open_bot(config, scheduler=False) as bot:
        try:
            code = await staff_service.create_invite(store, role, name, bot.now())
        except (LookupError, ValueError) as exc:
            print(f"memberbot: {exc}", file=sys.stderr)
            return 2
    print(f"Invite for a {role} of {store}{f' ({name})' if name else ''}, valid 24 hours, "
          "usable once. The employee sends 绑定 <code> to the Official Account:")
    print(code)
    return 0


async def staff_list(config: Config) -> int:
    async with open_bot(config, scheduler=False):
        rows = await Staff.all().order_by("id").select_related("store")
        if not rows:
            print("No staff yet: memberbot staff invite --store S001 --role clerk")
        for staff in rows:
            state = "active" if staff.active else "revoked"
            print(f"{staff.id:>4}  {staff.name or '-':<8} {staff.role:<8} {staff.store.code:<8} "
                  f"{state:<8} bound {staff.created_at:%Y-%m-%d}")
    return 0


async def staff_revoke(config: Config, staff_id: int) -> int:
    async with open_bot(config, scheduler=False):
        if not await staff_service.revoke(staff_id):
            print(f"memberbot: no active staff member with id {staff_id}", file=sys.stderr)
            return 1
    print(f"Staff member {staff_id} revoked; their WeChat account can no longer run commands.")
    return 0


async def purchase(config: Config, who: str, amount: str, note: str, store_code: str | None,
                   key: str | None) -> int:
    """The CLI twin of 消费: same service, same rules, audited as "cli"."""
    async with open_bot(config, scheduler=False) as bot:
        fen = earning.parse_yuan(amount, config.points.max_purchase * 100)
        if fen is None:
            print(f"memberbot: amount {amount!r} must be a positive number of yuan with at most "
                  f"two decimals, at most {config.points.max_purchase}", file=sys.stderr)
            return 2
        store = await Store.get_or_none(code=store_code or config.stores[0].code)
        if store is None:
            print(f"memberbot: no store {store_code!r}", file=sys.stderr)
            return 2
        try:
            member = await members.lookup(bot, who)
        except members.MemberNotFound as exc:
            print(f"memberbot: {bot.templates.render(exc.reason, text=who)}", file=sys.stderr)
            return 1
        result = await purchases.record(bot, member, fen, actor=Actor.cli(store), note=note,
                                        key=key or f"cli:{uuid.uuid4()}")
        await bot.outbox.notify(
            member.id, bot.templates.render("purchase_member.j2", result=result, amount=fen,
                                            store=store),
            purpose="purchase", key=f"notice:purchase:{result.purchase.id}",
            values={"amount": f"¥{earning.fen_to_yuan(fen)}", "points": str(result.points),
                    "balance": str(result.member.points),
                    "time": bot.now().astimezone(config.shop.tz).strftime("%Y-%m-%d %H:%M")})
    state = "already recorded" if result.duplicate else "recorded"
    print(f"Purchase #{result.purchase.id} {state}: ¥{earning.fen_to_yuan(fen)} for "
          f"{member.card_no}, +{result.points} points, balance {result.member.points}"
          + (f", upgraded to {result.new_tier}" if result.new_tier else ""))
    return 0


async def audit_log(config: Config, staff_id: int | None, who: str | None, since: str | None,
                    until: str | None, limit: int) -> int:
    async with open_bot(config, scheduler=False) as bot:
        query = AuditEntry.all()
        if staff_id is not None:
            query = query.filter(staff_id=staff_id)
        if who:
            try:
                query = query.filter(member_id=(await members.lookup(bot, who)).id)
            except members.MemberNotFound as exc:
                print(f"memberbot: {bot.templates.render(exc.reason, text=who)}",
                      file=sys.stderr)
                return 1
        tz = config.shop.tz
        for name, value, op in (("since", since, "gte"), ("until", until, "lt")):
            if value:
                try:
                    day = dt.date.fromisoformat(value)
                except ValueError:
                    print(f"memberbot: --{name} takes a date like 2026-11-01", file=sys.stderr)
                    return 2
                if op == "lt":
                    day += dt.timedelta(days=1)  # --until is inclusive
                # In UTC, as stored: SQLite compares the stored text, not the instant.
                start = local_midnight(day, tz)
                query = query.filter(**{f"created_at__{op}": start})
        rows = await query.order_by("-id").limit(limit).select_related("member")
        for row in reversed(rows):
            card = row.member.card_no if row.member else "-"
            print(f"{row.created_at.astimezone(tz):%Y-%m-%d %H:%M:%S} {row.actor:<16} "
                  f"{row.store_code or '-':<6} {row.action:<20} {card:<12} "
                  f"{_compact(row.before)} → {_compact(row.after)} {row.detail}")
    return 0


def _compact(values: dict | None) -> str:
    if not values:
        return "-"
    return ",".join(f"{k}={v}" for k, v in values.items())


async def coupon_template_add(config: Config, template: CouponTemplateConfig) -> int:
    async with open_bot(config, scheduler=False):
        stores = set(await Store.all().values_list("code", flat=True))
        validate_coupon(template, stores)
        if await CouponTemplate.exists(code=template.code):
            print(f"memberbot: a coupon template {template.code!r} exists already",
                  file=sys.stderr)
            return 1
        await coupons.add_template(template)
    print(f"Coupon template {template.code} added.")
    return 0


async def coupon_template_list(config: Config) -> int:
    async with open_bot(config, scheduler=False):
        for t in await CouponTemplate.all().order_by("id"):
            stock = f"{t.issued}/{t.stock}" if t.stock else f"{t.issued}/∞"
            state = "active" if t.active else "disabled"
            cost = f"{t.points_cost} pts" if t.points_cost else "-"
            print(f"{t.code:<12} {t.name:<12} {t.kind:<10} issued {stock:<10} {cost:<9} {state}")
    return 0


async def coupon_template_disable(config: Config, code: str) -> int:
    async with open_bot(config, scheduler=False):
        if not await CouponTemplate.filter(code=code).update(active=False):
            print(f"memberbot: no coupon template {code!r}", file=sys.stderr)
            return 1
    print(f"Coupon template {code} disabled: no new coupons; issued ones stay valid.")
    return 0


async def coupon_issue(config: Config, code: str, who: str | None, segment: str | None,
                       key: str | None) -> int:
    """Issue to one member or to a segment (all, or tier:<name>), in batches. Each member's
    coupon has its own key, so re-running the same issue (same --key) gives nobody a second."""
    async with open_bot(config, scheduler=False) as bot:
        template = await CouponTemplate.get_or_none(code=code)
        if template is None:
            print(f"memberbot: no coupon template {code!r}", file=sys.stderr)
            return 2
        key = key or f"cli:{uuid.uuid4()}"
        actor = Actor.cli()
        if who:
            try:
                member = await members.lookup(bot, who)
                coupon = await coupons.issue(bot, member, template, source="manual",
                                             key=f"{key}:{member.id}", actor=actor)
            except members.MemberNotFound as exc:
                print(f"memberbot: {bot.templates.render(exc.reason, text=who)}",
                      file=sys.stderr)
                return 1
            except coupons.CouponRefused as exc:
                print(f"memberbot: {bot.templates.render(exc.reason, **exc.values)}",
                      file=sys.stderr)
                return 1
            print(f"Issued {coupon.code} to {member.card_no}.")
            return 0
        query = Member.all()
        if segment and segment.startswith("tier:"):
            query = query.filter(tier=segment.removeprefix("tier:"))
        elif segment != "all":
            print("memberbot: --segment is all or tier:<name>", file=sys.stderr)
            return 2
        issued = refused = 0
        async for batch in batches(query, size=500):
            for member in batch:
                try:
                    await coupons.issue(bot, member, template, source="manual",
                                        key=f"{key}:{member.id}", actor=actor)
                    issued += 1
                except coupons.CouponRefused:
                    refused += 1
            print(f"… {issued} issued, {refused} refused (limit or stock)", flush=True)
    print(f"Done: {issued} issued, {refused} refused. Re-run with --key {key} to resume "
          "without issuing twice.")
    return 0


async def rotate_key(config: Config) -> int:
    async with open_bot(config, scheduler=False) as bot:
        rewritten, current = await privacy.rotate_key(bot)
    print(f"Re-encrypted {rewritten} phone numbers under key {bot.vault.key_id}; "
          f"{current} were already current. Once every worker runs with this key, remove the "
          "old one from MEMBERBOT_SECURITY_PREVIOUS_KEYS.")
    return 0


# --- backups, export and import (bot/services/ops/) ---

async def backup(config: Config, to: str | None) -> int:
    """A consistent copy of the SQLite database, safe while the server runs."""
    from bot.services import ops

    try:
        path, size = await ops.backup(config.database.url, Path(to) if to else None,
                                      tz=config.shop.tz)
    except ops.OpsError as exc:
        print(f"memberbot: {exc}", file=sys.stderr)
        return exc.status
    print(f"Backup written: {path} ({ops.human_size(size)})")
    return 0


async def restore(config: Config, source: str, yes: bool) -> int:
    from bot.services import ops

    try:
        db = ops.sqlite_path(config.database.url)
    except ops.OpsError as exc:
        print(f"memberbot: {exc}", file=sys.stderr)
        return exc.status
    if not yes:
        print(f"memberbot: restore replaces the whole database {db} with {source}; every change "
              "since that backup is lost. Stop memberbot serve and any workers first, then run "
              "again with --yes (the current database is kept beside it).", file=sys.stderr)
        return 2
    try:
        aside = await ops.restore(config.database.url, Path(source), tz=config.shop.tz)
    except ops.OpsError as exc:
        print(f"memberbot: {exc}", file=sys.stderr)
        return exc.status
    kept = f" The previous database is kept as {aside}." if aside else ""
    print(f"Restored {source} into {db}.{kept} Start memberbot again.")
    return 0


async def export_members(config: Config, fmt: str, to: str) -> int:
    from bot.services import ops

    async with open_bot(config, scheduler=False) as bot:
        try:
            result = await ops.export_members_to(bot, to)
        except ops.OpsError as exc:
            print(f"memberbot: {exc}", file=sys.stderr)
            return exc.status
    where = "stdout" if to == "-" else to
    print(f"Exported {result.count} members to {where} ({fmt}).", file=sys.stderr)
    return 0


async def import_members(config: Config, source: str, dry_run: bool) -> int:
    """Migration from an old system: everything validated first, nothing half-imported."""
    from bot.services import ops

    async with open_bot(config, scheduler=False) as bot:
        try:
            result = await ops.import_members(bot, Path(source), dry_run=dry_run,
                                              progress=ops.Progress(sys.stderr))
        except ops.OpsError as exc:
            print(f"memberbot: {exc}", file=sys.stderr)
            return exc.status
    if result.problems:
        rows = len({p.row for p in result.problems})
        print(f"memberbot: {source}: {len(result.problems)} problem(s) in {rows} row(s); "
              "nothing was imported. Fix them and run again:", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if result.dry_run:
        print(f"Dry run: all {result.rows} rows are valid; {result.imported} would be imported, "
              f"{result.already_there} are already there. Nothing was written.")
        return 0
    print(f"Imported {result.imported} members from {source}; {result.already_there} were "
          "already there.")
    if result.unchecked_cards:
        print(f"Note: {result.unchecked_cards} kept card numbers have no valid check digit; "
              "look those members up by phone.")
    return 0
