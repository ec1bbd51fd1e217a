"""`memberbot staff invite|list|revoke`: employees who run the shop from chat."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import CliError, pad
from bot.config import Config
from bot.models import Staff
from bot.runtime import open_bot
from bot.services import staff as staff_service


def register(commands: argparse._SubParsersAction) -> None:
    staff = commands.add_parser("staff", help="employees who run the shop from chat")
    actions = staff.add_subparsers(dest="action", required=True)
    invite = actions.add_parser("invite", help="a one-time code an employee sends as 绑定 <code>")
    invite.add_argument("--store", required=True, help="store code, e.g. S001")
    invite.add_argument("--role", required=True, choices=("clerk", "manager", "owner"))
    invite.add_argument("--name", default="", help="how the employee appears in the audit log")
    invite.set_defaults(run=_run_invite, needs="database")
    actions.add_parser("list", help="all staff, active and revoked").set_defaults(
        run=_run_list, needs="database")
    revoke = actions.add_parser("revoke", help="stop an employee's access")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_run_revoke, needs="database")


def _run_invite(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(invite(config, args.store, args.role, args.name))


def _run_list(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(list_staff(config))


def _run_revoke(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(revoke(config, args.id))


async def invite(config: Config, store: str, role: str, name: str) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            code = await staff_service.create_invite(store, role, name, bot.now())
        except (LookupError, ValueError) as exc:
            raise CliError(str(exc), 2) from None
    print(f"Invite for a {role} of {store}{f' ({name})' if name else ''}, valid 24 hours, "
          "usable once. The employee sends 绑定 <code> to the Official Account:")
    print(code)


async def list_staff(config: Config) -> None:
    tz = config.shop.tz  # shop time, as the audit log and the chat show it
    async with open_bot(config, scheduler=False):
        rows = await Staff.all().order_by("id").select_related("store")
        if not rows:
            print("No staff yet: memberbot staff invite --store S001 --role clerk")
        for staff in rows:
            state = "active" if staff.active else "revoked"
            bound = staff.created_at.astimezone(tz)
            print(f"{staff.id:>4}  {pad(staff.name or '-', 8)} {staff.role:<8} "
                  f"{staff.store.code:<8} {state:<8} bound {bound:%Y-%m-%d %H:%M}")


async def revoke(config: Config, staff_id: int) -> None:
    async with open_bot(config, scheduler=False):
        if not await staff_service.revoke(staff_id):
            raise CliError(f"no active staff member with id {staff_id}")
    print(f"Staff member {staff_id} revoked; their WeChat account can no longer run commands.")
