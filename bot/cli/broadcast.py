"""`memberbot broadcast create|preview|start|pause|resume|cancel|confirm|status|list`: campaigns
to a segment from the owner's shell, on the same service the chat's 群发 uses
(bot/services/campaigns). The engine that sends runs in `memberbot serve` (or the sandbox);
these commands create and steer campaigns and read their progress."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable

from bot.cli.common import CliError, clip, pad, segment_refusal
from bot.config import Config
from bot.rules.campaigns import CHANNELS
from bot.runtime import open_bot
from bot.services import campaigns, segments

AT_FORMAT = "%Y-%m-%d %H:%M"
WATCH_EVERY = 1.0  # seconds between two looks at a running campaign
BAR_WIDTH = 30
FINISHED = ("sent", "failed", "skipped", "unknown")
# The moves a command makes; the service audits each, as the shell's (no staff id).
STEERING = {"start": campaigns.start, "pause": campaigns.pause, "resume": campaigns.resume,
            "cancel": campaigns.cancel, "confirm": campaigns.confirm_stale}
# Refusals that mean the command was written wrong (exit 2), not that the campaign said no.
USAGE_REASONS = frozenset({"bad_segment", "unknown_template", "unknown_coupon", "no_message",
                           "bad_channel", "bad_holdout", "past_time"})


def register(commands: argparse._SubParsersAction) -> None:
    broadcast = commands.add_parser("broadcast", help="campaigns to a segment of members")
    actions = broadcast.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new campaign (a draft until started or --at)")
    create.add_argument("--segment", required=True,
                        help='who gets it, e.g. "tier=金卡会员 last_visit>30d" (docs/segments.md)')
    message = create.add_mutually_exclusive_group(required=True)
    message.add_argument("--template", help="NAME of templates/messages/campaigns/NAME.j2, "
                         "rendered per member (member.name, member.tier, coupon, shop)")
    message.add_argument("--text", help="the message itself, sent as typed")
    create.add_argument("--coupon", help="a coupon template code each recipient is given")
    create.add_argument("--channel", default="wechat,sms",
                        help="wechat, sms or wechat,sms (default: WeChat, SMS when WeChat "
                             "cannot reach a member)")
    create.add_argument("--at", help='start at this shop-local time, e.g. "2026-12-24 10:00"')
    create.add_argument("--holdout", type=int, default=0,
                        help="percent of the segment that gets nothing, to compare results")
    create.set_defaults(run=_sync(create_campaign), needs="database")
    for name, help_text in (
            ("preview", "the text for a sample member and the counts per channel"),
            ("start", "start a draft now"), ("pause", "stop sending for now"),
            ("resume", "go on with a paused campaign"), ("cancel", "send nothing more"),
            ("confirm", "let a stale scheduled campaign (missed its time) go out now")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("id", type=int)
        action.set_defaults(run=_sync(preview if name == "preview" else _steer(name)),
                            needs="database")
    status = actions.add_parser("status", help="counts by state, results, unknown outcomes")
    status.add_argument("id", type=int)
    status.add_argument("--watch", action="store_true",
                        help="a progress bar until the campaign is done (or stops)")
    status.set_defaults(run=_sync(show_status), needs="database")
    latest = actions.add_parser("list", help="the latest campaigns")
    latest.add_argument("--limit", type=int, default=20)
    latest.set_defaults(run=_sync(list_campaigns), needs="database")


def _sync(command: Callable[[argparse.Namespace, Config], Awaitable[None]]):
    def run(args: argparse.Namespace, config: Config) -> None:
        asyncio.run(command(args, config))

    return run


def channels_of(text: str) -> tuple[str, ...]:
    chosen = tuple(c.strip() for c in text.split(",") if c.strip())
    if not chosen or any(c not in CHANNELS for c in chosen) or len(set(chosen)) < len(chosen):
        raise CliError(f"--channel is wechat, sms or wechat,sms, not {text!r}", 2)
    return chosen


def shop_time(text: str, tz: dt.tzinfo) -> dt.datetime:
    """--at, read as the shop's local time, as the aware moment it means (stored in UTC)."""
    try:
        local = dt.datetime.strptime(text.strip(), AT_FORMAT)
    except ValueError:
        raise CliError(f'--at is the shop\'s local time as "YYYY-MM-DD HH:MM", not {text!r}',
                       2) from None
    return local.replace(tzinfo=tz).astimezone(dt.UTC)


def _failed(exc: campaigns.CampaignError) -> CliError:
    return CliError(str(exc), 2 if exc.reason in USAGE_REASONS else 1)


async def create_campaign(args: argparse.Namespace, config: Config) -> None:
    channels = channels_of(args.channel)
    at = shop_time(args.at, config.shop.tz) if args.at else None
    async with open_bot(config, scheduler=False) as bot:
        try:
            campaign = await campaigns.create(
                bot, segment=args.segment, template=args.template, text=args.text,
                coupon=args.coupon, channels=channels, at=at, holdout=args.holdout)
        except campaigns.CampaignError as exc:
            if exc.reason == "bad_segment" and isinstance(exc.__cause__, segments.UnknownSegment):
                raise segment_refusal(args.segment, exc.__cause__) from None
            raise _failed(exc) from None
    print(campaign.id)
    then = (f"schedule it for {_local(campaign.scheduled_at, config)} shop time"
            if campaign.scheduled_at else "send it")
    print(f"Campaign {campaign.id} created (a draft). Check it with: memberbot broadcast "
          f"preview {campaign.id}; {then} with: memberbot broadcast start {campaign.id}",
          file=sys.stderr)


async def preview(args: argparse.Namespace, config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            shown = await campaigns.preview(bot, args.id)
        except campaigns.CampaignError as exc:
            raise _failed(exc) from None
    print(f"Campaign {args.id}: {shown.total} members in the segment"
          + (f", {shown.holdout} of them held out" if shown.holdout else ""))
    print(f"As member {shown.sample_card_no} would read it:" if shown.sample_card_no
          else "The message (no member in the segment to fill it for):")
    for line in shown.text.splitlines() or [""]:
        print(f"  | {line}")
    for channel, count in shown.by_channel.items():
        print(f"  {channel:<8} {count}")
    print(f"  {shown.mass_left} can still receive a WeChat mass message this month "
          f"({config.broadcast.mass_monthly_cap} a month each; then SMS, where allowed)")


def _steer(name: str) -> Callable[[argparse.Namespace, Config], Awaitable[None]]:
    operation = STEERING[name]

    async def steer(args: argparse.Namespace, config: Config) -> None:
        async with open_bot(config, scheduler=False) as bot:
            try:
                campaign = await operation(bot, args.id)
            except campaigns.CampaignError as exc:
                raise _failed(exc) from None
        print(f"Campaign {campaign.id}: {campaign.status}.")

    return steer


def progress_bar(finished: int, total: int, width: int = BAR_WIDTH) -> str:
    """[#####.....]  50% 5/10. `total` is the deliveries written so far: it grows while the
    engine reads the segment, so the bar may step back a little before it fills."""
    share = finished / total if total else 0.0
    filled = round(share * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {finished}/{total}"


def finished_count(counts: dict[str, int]) -> int:
    return sum(counts.get(state, 0) for state in FINISHED)


async def show_status(args: argparse.Namespace, config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            status = await campaigns.status(bot, args.id)
            if args.watch:
                status = await _watch(bot, status)
        except campaigns.CampaignError as exc:
            raise _failed(exc) from None
    _print_status(status, config)


async def _watch(bot, status):
    """Redraw one line until the campaign is done or no longer running."""
    tty = sys.stdout.isatty()
    while True:
        line = f"{status.campaign.status:<9} " + (
            progress_bar(finished_count(status.counts), status.total) if status.total
            else "waiting for a worker to read the segment (`memberbot serve` or `worker` "
                 "sends campaigns)")
        print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
        if status.done or status.campaign.status not in ("running", "scheduled"):
            if tty:
                print()
            return status
        await asyncio.sleep(WATCH_EVERY)
        status = await campaigns.status(bot, status.campaign.id)


def _print_status(status, config: Config) -> None:
    campaign = status.campaign
    print(f"Campaign {campaign.id}: {campaign.status}, segment {campaign.segment!r}, "
          f"channels {campaign.channels}")
    if campaign.scheduled_at:
        print(f"  scheduled for {_local(campaign.scheduled_at, config)} shop time")
    print(f"  {progress_bar(finished_count(status.counts), status.total)}")
    for state, count in status.counts.items():
        why = ""
        if state == "skipped" and status.skipped:
            why = "  (" + ", ".join(f"{reason or '-'} {n}" for reason, n
                                    in sorted(status.skipped.items())) + ")"
        print(f"  {state:<8} {count}{why}")
    mass = status.mass
    if mass.get("calls"):
        reported = (f"WeChat reported {mass['sent']} sent, {mass['filtered']} filtered out, "
                    f"{mass['errors']} failed" if mass.get("total")
                    else "no report from WeChat yet")
        print(f"  WeChat mass sends: {mass['calls']}; {reported}")
    results = status.results
    print("  results        sent     holdout")
    for label, sent, held in _result_rows(results):
        print(f"  {label:<14} {sent:<8} {held}")
    if status.unknown:
        print(f"  {len(status.unknown)} with an unknown outcome (may or may not have "
              "received it; not resent): " + ", ".join(status.unknown))


def _result_rows(results) -> list[tuple[str, int, int]]:
    sent, held = results.sent, results.holdout
    return [("members", sent.members, held.members),
            ("delivered", sent.delivered, held.delivered),
            ("coupons used", sent.redeemed, held.redeemed),
            ("bought (7 d)", sent.purchased, held.purchased)]


async def list_campaigns(args: argparse.Namespace, config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        found = await campaigns.list_campaigns(bot, limit=args.limit)
    if not found:
        print('No campaigns yet: memberbot broadcast create --segment "tier=金卡会员" '
              '--text "…"')
    for campaign in found:
        message = campaign.template or (campaign.text or "").replace("\n", " ")
        when = _local(campaign.scheduled_at or campaign.created_at, config)
        segment = pad(clip(campaign.segment, 28), 28)
        print(f"{campaign.id:>5}  {campaign.status:<9} {when}  {segment} "
              f"{clip(message, 30)}".rstrip())


def _local(moment: dt.datetime, config: Config) -> str:
    return moment.astimezone(config.shop.tz).strftime(AT_FORMAT)
