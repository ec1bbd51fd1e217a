"""`memberbot coupon template add|list|disable` and `memberbot coupon issue`."""

from __future__ import annotations

import argparse
import asyncio
import uuid

from bot.cli.common import CliError, lookup_member, pad, refusal
from bot.config import Config, CouponTemplateConfig, validate_coupon
from bot.models import CouponTemplate, Store
from bot.notifications import notices
from bot.runtime import open_bot
from bot.services import coupons, segments
from bot.services.staff import Actor


def register(commands: argparse._SubParsersAction) -> None:
    coupon = commands.add_parser("coupon", help="coupon templates and issuing")
    actions = coupon.add_subparsers(dest="action", required=True)
    template = actions.add_parser("template", help="kinds of coupon")
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
    add.set_defaults(run=_run_add, needs="database")
    template_actions.add_parser("list", help="all templates, with stock").set_defaults(
        run=_run_list, needs="database")
    disable = template_actions.add_parser("disable", help="stop issuing a template")
    disable.add_argument("code")
    disable.set_defaults(run=_run_disable, needs="database")
    give = actions.add_parser("issue", help="issue coupons to a member or a segment")
    give.add_argument("--template", required=True)
    target = give.add_mutually_exclusive_group(required=True)
    target.add_argument("--member", help="phone number or card number")
    target.add_argument("--segment", help="a segment (docs/segments.md): all, tier=金卡会员 …")
    give.add_argument("--key", help="re-use to resume an interrupted issue without doubles")
    give.set_defaults(run=_run_issue, needs="database")


def _run_add(args: argparse.Namespace, config: Config) -> None:
    template = CouponTemplateConfig(
        code=args.code, name=args.name, kind=args.kind, amount=args.amount,
        threshold=args.threshold, discount=args.discount, cap=args.cap, gift=args.gift,
        points_cost=args.points_cost, valid_days=args.valid_days, valid_from=args.valid_from,
        valid_until=args.valid_until, stock=args.stock, per_member=args.per_member,
        stores=[s for s in args.stores.split(",") if s], exclusive=not args.combinable)
    asyncio.run(template_add(config, template))


def _run_list(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(template_list(config))


def _run_disable(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(template_disable(config, args.code))


def _run_issue(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(issue(config, args.template, args.member, args.segment, args.key))


async def template_add(config: Config, template: CouponTemplateConfig) -> None:
    async with open_bot(config, scheduler=False):
        stores = set(await Store.all().values_list("code", flat=True))
        validate_coupon(template, stores)
        if await CouponTemplate.exists(code=template.code):
            raise CliError(f"a coupon template {template.code!r} exists already")
        await coupons.add_template(template)
    print(f"Coupon template {template.code} added.")


async def template_list(config: Config) -> None:
    async with open_bot(config, scheduler=False):
        for t in await CouponTemplate.all().order_by("id"):
            stock = f"{t.issued}/{t.stock}" if t.stock else f"{t.issued}/∞"
            state = "active" if t.active else "disabled"
            cost = f"{t.points_cost} pts" if t.points_cost else "-"
            print(f"{t.code:<12} {pad(t.name, 12)} {t.kind:<10} issued {stock:<10} {cost:<9} "
                  f"{state}")


async def template_disable(config: Config, code: str) -> None:
    async with open_bot(config, scheduler=False):
        if not await CouponTemplate.filter(code=code).update(active=False):
            raise CliError(f"no coupon template {code!r}")
    print(f"Coupon template {code} disabled: no new coupons; issued ones stay valid.")


NOTICE_CONCURRENCY = 8  # notices in flight at once while a bulk issue tells its members


async def _tell(bot, given: list, template: CouponTemplate) -> None:
    """Each member hears about their coupon, once: the notice's key is the coupon's, and a
    re-run with the same --key finds the same coupons (and their notices sent)."""
    gate = asyncio.Semaphore(NOTICE_CONCURRENCY)

    async def one(coupon) -> None:
        async with gate:
            await notices.coupon_issued(bot, coupon, template)

    await asyncio.gather(*(one(coupon) for coupon in given))


async def issue(config: Config, code: str, who: str | None, segment: str | None,
                key: str | None) -> None:
    """Issue to one member or to a segment (docs/segments.md), in batches. Each member's
    coupon has its own key, so re-running the same issue (same --key) gives nobody a second."""
    async with open_bot(config, scheduler=False) as bot:
        template = await CouponTemplate.get_or_none(code=code)
        if template is None:
            raise CliError(f"no coupon template {code!r}", 2)
        key = key or f"cli:{uuid.uuid4()}"
        actor = Actor.cli()
        if who:
            member = await lookup_member(bot, who)
            try:
                coupon = await coupons.issue(bot, member, template, source="manual",
                                             key=f"{key}:{member.id}", actor=actor)
            except coupons.CouponRefused as exc:
                raise refusal(bot, exc) from None
            await notices.coupon_issued(bot, coupon, template)
            print(f"Issued {coupon.code} to {member.card_no}.")
            return
        try:
            chosen = await segments.parse_checked(segment or "", bot.config)
        except segments.UnknownSegment as exc:
            raise CliError(f"--segment: {exc} (docs/segments.md)", 2) from None
        issued = refused = 0
        async for batch in segments.members(chosen, today=bot.today(), size=500):
            given = []
            for member in batch:
                try:
                    given.append(await coupons.issue(bot, member, template, source="manual",
                                                     key=f"{key}:{member.id}", actor=actor))
                    issued += 1
                except coupons.CouponRefused:
                    refused += 1
            await _tell(bot, given, template)
            print(f"… {issued} issued, {refused} refused (limit or stock)", flush=True)
    print(f"Done: {issued} issued, {refused} refused. Re-run with --key {key} to resume "
          "without issuing twice.")
