"""What a member service thread (人工) sends: a member's words relayed to a staff member, a staff
member's answer to the member, and the notes that a thread opened or closed. Each is a
customer-service message through the outbox, so WeChat's quota rules apply to staff too (they
are followers like anyone); the outcome says whether it went out, and if not, why.

Services decide who gets what; the texts are templates (templates/messages/support_*.j2)."""

from __future__ import annotations

from bot.models import Member, Staff, SupportMessage, SupportThread
from bot.notifications.outbox import Outcome
from bot.notifications.replies import Text

PURPOSE = "support"


def member_label(member: Member) -> str:
    """How staff see a member: the name and the card number's last four digits."""
    return f"{member.name or '会员'}（卡号尾号{member.card_no[-4:]}）"


async def relay(bot, staff: Staff, thread: SupportThread, member: Member,
                messages: list[SupportMessage], *, key: str) -> Outcome:
    """A member's messages (one, or several that waited) to one staff member."""
    text = bot.templates.render("support_to_staff.j2", number=thread.id,
                                member=member_label(member), messages=messages,
                                tz=bot.config.shop.tz)
    return await bot.outbox.wechat(staff.openid, Text(text), key=f"{key}:to:{staff.id}",
                                   purpose=PURPOSE)


async def asked(bot, staff: Staff, thread: SupportThread, member: Member, *,
                key: str) -> Outcome:
    """A member asked for a person: the staff on duty hear of it."""
    text = bot.templates.render("support_asked_staff.j2", number=thread.id,
                                member=member_label(member))
    return await bot.outbox.wechat(staff.openid, Text(text), key=f"{key}:to:{staff.id}",
                                   purpose=PURPOSE)


async def answer(bot, openid: str, staff: Staff, text: str, *, key: str) -> Outcome:
    """A staff member's words to the member."""
    rendered = bot.templates.render("support_from_staff.j2", name=staff.name, text=text)
    return await bot.outbox.wechat(openid, Text(rendered), key=key, purpose=PURPOSE)


async def closed_to_member(bot, openid: str, by: str, *, key: str) -> Outcome:
    text = bot.templates.render("support_closed_member.j2", by=by)
    return await bot.outbox.wechat(openid, Text(text), key=key, purpose=PURPOSE)


async def closed_to_staff(bot, staff: Staff, thread: SupportThread, member: Member, by: str, *,
                          key: str) -> Outcome:
    text = bot.templates.render("support_closed_staff.j2", number=thread.id,
                                member=member_label(member), by=by,
                                idle_minutes=bot.config.service.idle_minutes)
    return await bot.outbox.wechat(staff.openid, Text(text), key=f"{key}:to:{staff.id}",
                                   purpose=PURPOSE)
