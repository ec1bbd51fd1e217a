"""Proving a phone number by SMS code, for each dialog that asks for one (registration,
修改资料): the code goes out under the registration's limits, the same answer for every number
(nobody learns from it whose number it is), and the dialog moves on to its code step."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.states import State
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.services import verification

# Asking for the code again at the code step (or after a send that failed).
RESEND_WORDS = ("重发", "重新发送", "没收到")


async def send_code(ctx: Context, phone: str, *, purpose: str, code_step: State,
                    sent: str) -> Reply:
    """Send a code to `phone`; `sent` is the template that says so (or the refusal's)."""
    result = await verification.send_code(ctx.bot, phone, ctx.inbound.user, purpose)
    if not result.sent:
        return ctx.reply(result.template, retry_after=result.retry_after)
    ctx.dialog.set(code_step)
    return ctx.reply(sent, masked=mask_phone(phone),
                     minutes=ctx.bot.config.sms_limits.code_ttl_seconds // 60)
