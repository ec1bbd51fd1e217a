"""The `memberbot` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config, validate_for_serving

log = logging.getLogger("memberbot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memberbot", description=__doc__)
    parser.add_argument("--config", help="path to config.toml (default: ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port (SO_REUSEPORT); default 1")
    commands.add_parser("sandbox", help="run with local WeChat and SMS stand-ins and demo data")
    commands.add_parser("worker", help="run the scheduled jobs without the webhook")

    staff = commands.add_parser("staff", help="employees who run the shop from chat")
    staff_actions = staff.add_subparsers(dest="action", required=True)
    invite = staff_actions.add_parser("invite",
                                      help="a one-time code an employee sends as 绑定 <code>")
    invite.add_argument("--store", required=True, help="store code, e.g. S001")
    invite.add_argument("--role", required=True, choices=("clerk", "manager", "owner"))
    invite.add_argument("--name", default="", help="how the employee appears in the audit log")
    staff_actions.add_parser("list", help="all staff, active and revoked")
    revoke = staff_actions.add_parser("revoke", help="stop an employee's access")
    revoke.add_argument("id", type=int)

    buy = commands.add_parser("purchase", help="record a purchase (like 消费 in chat)")
    buy.add_argument("member", help="phone number or card number")
    buy.add_argument("amount", help="yuan, e.g. 128.50")
    buy.add_argument("--note", default="")
    buy.add_argument("--store", help="store code (default: the first store)")
    buy.add_argument("--key", help="idempotency key: repeating it records nothing new")

    audit = commands.add_parser("audit", help="the append-only log of staff actions")
    audit.add_argument("--staff", type=int, help="staff id")
    audit.add_argument("--member", help="phone number or card number")
    audit.add_argument("--since", help="first day, e.g. 2026-11-01")
    audit.add_argument("--until", help="last day (inclusive)")
    audit.add_argument("--limit", type=int, default=200)

    chat = commands.add_parser("chat", help="act as a WeChat user against the sandbox")
    chat.add_argument("--openid", default="o_demo_1")
    chat.add_argument("--mode", choices=("aes", "compat", "plain"), default="aes")

    menu = commands.add_parser("menu", help="the Official Account's custom menu")
    menu.add_argument("action", choices=("push", "show"))

    qr = commands.add_parser("qrcode", help="a printable parametric QR code (PNG)")
    qr.add_argument("--scene", required=True, help="store:S001, staff:<id> or ref:<card_no>")
    qr.add_argument("-o", "--output", required=True, help="PNG file to write")
    qr.add_argument("--temporary", action="store_true",
                    help="a temporary code (default: permanent)")
    qr.add_argument("--expire", type=int, default=2_592_000,
                    help="seconds a temporary code lives (at most 2592000 = 30 days)")
    qr.add_argument("--caption", help="text under the code (default: the store's name)")

    coupon = commands.add_parser("coupon", help="coupon templates and issuing")
    coupon_actions = coupon.add_subparsers(dest="action", required=True)
    template = coupon_actions.add_parser("template", help="kinds of coupon")
    template_actions = template.add_subparsers(dest="template_action", required=True)
    add = template_actions.add_parser("add", help="a new coupon template")
    add.add_argument("--code", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True,
                     choices=("amount_off", "threshold", "discount", "gift"))
    add.add_argument("--amount", type=float, default=0.0, help="yuan off")
    add.add_argument("--threshold", type=float, default=0.0, help="yuan the purchase must reach")
    add.add_argument("--discount", type=int, default=100, help="percent to pay: 88 = 8.8折")
    add.add_argument("--cap", type=float, default=0.0, help="most yuan a discount takes off")
    add.add_argument("--gift", default="")
    add.add_argument("--points-cost", type=int, default=0, help="> 0: exchangeable for points")
    add.add_argument("--valid-days", type=int, default=0)
    add.add_argument("--valid-from", default="")
    add.add_argument("--valid-until", default="")
    add.add_argument("--stock", type=int, default=0, help="0 = unlimited")
    add.add_argument("--per-member", type=int, default=0, help="0 = no limit")
    add.add_argument("--stores", default="", help="comma-separated store codes; empty = all")
    add.add_argument("--combinable", action="store_true",
                     help="may be used together with other coupons")
    template_actions.add_parser("list", help="all templates, with stock")
    disable = template_actions.add_parser("disable", help="stop issuing a template")
    disable.add_argument("code")
    give = coupon_actions.add_parser("issue", help="issue coupons to a member or a segment")
    give.add_argument("--template", required=True)
    target = give.add_mutually_exclusive_group(required=True)
    target.add_argument("--member", help="phone number or card number")
    target.add_argument("--segment", help="all, or tier:<name>")
    give.add_argument("--key", help="re-use to resume an interrupted issue without doubles")

    save = commands.add_parser("backup", help="a consistent copy of the SQLite database, "
                                               "safe while the server runs")
    save.add_argument("--to", help="file to write "
                                   "(default: backups/memberbot-YYYYmmdd-HHMMSS.db)")
    back = commands.add_parser("restore", help="replace the SQLite database with a backup "
                                               "(server stopped)")
    back.add_argument("file", help="a backup made by memberbot backup")
    back.add_argument("--yes", action="store_true",
                      help="really replace the database (the current one is kept beside it)")
    export = commands.add_parser("export", help="members to CSV (UTF-8 with BOM, for Excel)")
    export.add_argument("what", choices=("members",))
    export.add_argument("--format", choices=("csv",), default="csv")
    export.add_argument("--to", default="-", help="file to write, or - for stdout (default)")
    load = commands.add_parser("import", help="members from an old system's CSV file")
    load.add_argument("what", choices=("members",))
    load.add_argument("file", help="CSV with a header row; phone is the only required column")
    load.add_argument("--dry-run", action="store_true",
                      help="validate and report only; write nothing")

    security = commands.add_parser("security", help="keys")
    security.add_argument("action", choices=("new-key", "rotate-key"),
                          help="new-key prints a data key; rotate-key re-encrypts every phone "
                               "under the current key (see README)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        return _run(args, config)
    except ConfigError as exc:
        print(f"memberbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the port is taken by another program
        print(f"memberbot: {exc.strerror or exc}", file=sys.stderr)
        return 1


# Commands that open the member database need the full set of keys (data key included).
NEEDS_SERVING_CONFIG = frozenset({"serve", "worker", "staff", "purchase", "audit", "coupon"})


def _run(args: argparse.Namespace, config: Config) -> int:
    from bot.cli import commands

    if args.command in NEEDS_SERVING_CONFIG:
        validate_for_serving(config)

    match args.command:
        case "serve":
            return commands.serve(config, args.workers)
        case "sandbox":
            from bot.sandbox.runner import run_sandbox

            asyncio.run(run_sandbox(config))
            return 0
        case "chat":
            from bot.sandbox.chat import run_chat

            asyncio.run(run_chat(config, args.openid, args.mode))
            return 0
        case "worker":
            return asyncio.run(commands.worker(config))
        case "staff":
            if args.action == "invite":
                return asyncio.run(commands.staff_invite(config, args.store, args.role,
                                                         args.name))
            if args.action == "list":
                return asyncio.run(commands.staff_list(config))
            return asyncio.run(commands.staff_revoke(config, args.id))
        case "purchase":
            return asyncio.run(commands.purchase(config, args.member, args.amount, args.note,
                                                 args.store, args.key))
        case "audit":
            return asyncio.run(commands.audit_log(config, args.staff, args.member, args.since,
                                                  args.until, args.limit))
        case "coupon":
            return asyncio.run(_coupon(args, config))
        case "menu":
            return asyncio.run(commands.menu(config, args.action))
        case "qrcode":
            return asyncio.run(commands.qrcode(config, args.scene, Path(args.output),
                                               args.temporary, args.expire, args.caption))
        case "backup":
            return asyncio.run(commands.backup(config, args.to))
        case "restore":
            return asyncio.run(commands.restore(config, args.file, args.yes))
        case "export":
            validate_for_serving(config)  # the data key decrypts the phone numbers
            return asyncio.run(commands.export_members(config, args.format, args.to))
        case "import":
            validate_for_serving(config)  # the data key encrypts the phone numbers
            return asyncio.run(commands.import_members(config, args.file, args.dry_run))
        case "security" if args.action == "rotate-key":
            validate_for_serving(config)
            return asyncio.run(commands.rotate_key(config))
        case "security":
            from bot.infra.vault import new_data_key

            print(new_data_key())
            return 0
    return 2


async def _coupon(args: argparse.Namespace, config: Config) -> int:
    from bot.cli import commands
    from bot.config import CouponTemplateConfig

    if args.action == "issue":
        return await commands.coupon_issue(config, args.template, args.member, args.segment,
                                           args.key)
    if args.template_action == "list":
        return await commands.coupon_template_list(config)
    if args.template_action == "disable":
        return await commands.coupon_template_disable(config, args.code)
    template = CouponTemplateConfig(
        code=args.code, name=args.name, kind=args.kind, amount=args.amount,
        threshold=args.threshold, discount=args.discount, cap=args.cap, gift=args.gift,
        points_cost=args.points_cost, valid_days=args.valid_days, valid_from=args.valid_from,
        valid_until=args.valid_until, stock=args.stock, per_member=args.per_member,
        stores=[s for s in args.stores.split(",") if s], exclusive=not args.combinable)
    return await commands.coupon_template_add(config, template)

