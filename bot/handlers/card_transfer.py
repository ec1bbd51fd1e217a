"""换绑 <手机号|卡号>: a manager moves a card to the member's new WeChat account.

It takes two proofs, from two people: the member, from the new account, registers with the
card's phone number and answers its SMS code (bot/handlers/registration.py keeps that proof for
a day); then a manager, who has the member in front of them, sends 换绑. Neither alone moves a
card. The old account is told (if it still follows us) and the new one welcomed."""

from __future__ import annotations

import functools

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_command as _staff_command
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply, Text
from bot.services import members
from bot.services.staff import Actor

router = Router("card_transfer")
staff_command = functools.partial(_staff_command, on=router)


@staff_command("换绑", action="transfer_card", usage="换绑 <手机号|卡号>", args=(1, 1))
async def transfer(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    done = await members.transfer_card(ctx.bot, member, actor, key=ctx.key)
    request_id = done.request.id
    if done.old_openid and done.old_following:
        ctx.bot.spawn(ctx.bot.outbox.wechat(
            done.old_openid, Text(ctx.render("transfer_old_account.j2", member=done.member)),
            key=f"transfer-old:{request_id}", purpose="card_transfer"),
            f"transfer-old:{request_id}")
    ctx.bot.spawn(ctx.bot.outbox.wechat(
        done.new_openid, Text(ctx.render("transfer_new_account.j2", member=done.member)),
        key=f"transfer-new:{request_id}", purpose="card_transfer"),
        f"transfer-new:{request_id}")
    return ctx.reply("transfer_done.j2", member=done.member, request=done.request,
                     had_wechat=bool(done.old_openid), tz=ctx.bot.config.shop.tz,
                     masked=mask_phone(members.phone_of(ctx.bot, done.member)))
