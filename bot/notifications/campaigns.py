"""A campaign's words: its Jinja2 file in templates/messages/campaigns/<name>.j2 (with the
member's fields, the shop and the campaign's coupon kind), or the literal text staff typed.
Services decide who gets what; the text is made here."""

from __future__ import annotations

import re

from bot.models import Campaign, CouponTemplate, Member

FOLDER = "campaigns"
# A template name is a file name in the folder: letters, digits, _ and -, nothing that climbs out.
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def template_path(name: str) -> str:
    return f"{FOLDER}/{name}.j2"


def template_exists(bot, name: str) -> bool:
    return bool(_NAME.match(name)) and bot.templates.exists(template_path(name))


def message_for(bot, campaign: Campaign, member: Member,
                coupon: CouponTemplate | None) -> str:
    """The message for one member. A literal text is sent as typed (never run as a template:
    staff words are not code)."""
    if campaign.template is None:
        return (campaign.text or "").strip()
    return bot.templates.render(template_path(campaign.template), member=member, coupon=coupon)


def sms_params(text: str) -> dict[str, str]:
    """The marketing SMS template's one parameter ([sms] template_marketing, "${text}回T退订"):
    the opt-out wording is the template's own ending, so every marketing SMS carries it."""
    return {"text": text}
