"""Proving a phone number by SMS code, for each dialog that asks for one (registration,
修改资料): the code goes out under the registration's limits, the same answer for every number
(nobody learns from it whose number it is), and the dialog moves on to its code step."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.states import State
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.parsing import normalize_phone, parse_code
from bot.services import verification

# Asking for the code again at the code step (or after a send that failed).
RESEND_WORDS = ("重发", "重新发送", "没收到")
# Another number at the phone or code step.
CHANGE_PHONE_WORDS = ("换号", "换手机号", "修改手机号")


def a_phone(ctx: Context) -> bool:
    return normalize_phone(ctx.text) is not None


def a_code(ctx: Context) -> bool:
    return parse_code(ctx.text) is not None


def keep(ctx: Context, phone: str) -> None:
    """The number being proved, sealed in the dialog's data (never stored in clear)."""
    ctx.dialog.update(phone=ctx.bot.vault.encrypt(phone))


def kept(ctx: Context) -> str | None:
    """The number the dialog is proving, or None (none yet, or sealed under a key retired
    since: the dialog asks for the number again)."""
    sealed = ctx.dialog.data.get("phone")
    if not sealed:
        return None
    try:
        return ctx.bot.vault.decrypt(sealed)
    except ValueError:
        return None


async def send_code(ctx: Context, phone: str, *, purpose: str, code_step: State,
                    sent: str) -> Reply:
    """Send a code to `phone`; `sent` is the template that says so (or the refusal's)."""
    result = await verification.send_code(ctx.bot, phone, ctx.inbound.user, purpose)
    if not result.sent:
        return ctx.reply(result.template, retry_after=result.retry_after)
    ctx.dialog.set(code_step)
    return ctx.reply(sent, masked=mask_phone(phone),
                     minutes=ctx.bot.config.sms_limits.code_ttl_seconds // 60)
