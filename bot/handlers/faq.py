"""Shop questions ([[faq]] in config.toml): opening hours, the address, parking, the phone.

The last thing a message tries before the "not understood" answer (bot/handlers/help.py).
Inside a dialog only a message that is a topic or keyword as a whole is answered (and the
dialog's question asked again): other text there is the dialog's answer. A command
always wins: a message that is a command word (积分, 帮助, 你好) is never taken here, and a
keyword that is one is refused when the app is built (check_keywords).

A place (an entry with an address and coordinates) is answered with a link card (图文) whose
link opens a map marker: an Official Account cannot send a member a location message.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import NO_DIALOG, Router, SkipHandler
from bot.config import ConfigError, FaqConfig
from bot.notifications.replies import News, Reply, Text
from bot.rules import faq

router = Router("faq")


def _not_a_command(ctx: Context) -> bool:
    # A question word alone is a command of its own (answer_in_dialog, in any state).
    return bool(ctx.bot.config.faq) and not ctx.is_command(ctx.text)


@router.when(_not_a_command, state=NO_DIALOG, kinds=("text",))
async def answer_faq(ctx: Context) -> Reply:
    entry = faq.match(ctx.text, ctx.bot.config.faq)
    if entry is None:
        raise SkipHandler
    return _answer(ctx, entry)


def _names_a_question(ctx: Context) -> bool:
    return faq.asked(ctx.text, ctx.bot.config.faq) is not None


@router.global_command(commands.FAQ, also=_names_a_question)
async def answer_in_dialog(ctx: Context) -> Reply:
    """A topic or keyword sent alone, in any dialog (a new follower at the consent step asking
    地址): answered like 积分, and the dialog's question is asked again."""
    return _answer(ctx, faq.asked(ctx.text, ctx.bot.config.faq), card=ctx.dialog.state is None)


def _answer(ctx: Context, entry: FaqConfig, *, card: bool = True) -> Reply:
    """The entry's answer; a place as a link card, or as text with the link where the dialog's
    question must follow in the same reply (a card carries no question)."""
    if not entry.located:
        return Text(entry.answer.strip())
    shop = ctx.bot.config.shop
    title = entry.title or shop.name
    url = faq.marker_url(entry.map_url or shop.map_url, entry.latitude, entry.longitude, title)
    description = "\n".join(part for part in (entry.address.strip(), entry.answer.strip())
                            if part)
    if not card:
        return Text(f"{title}\n{description}\n地图：{url}")
    return News(title, description, url, entry.pic_url)


def check_keywords(entries: Sequence[FaqConfig], root: Router) -> None:
    """Refuse a topic or keyword that is, as a whole message, a command word (积分, 帮助): the
    command would answer it and the entry never would, which the shop would only find out from
    a member. Raises ConfigError naming the entry."""
    for entry in entries:
        for word in (entry.topic, *entry.keywords):
            if root.is_command(word):
                raise ConfigError(
                    f"faq.{entry.topic}.keywords: {word!r} is a command word, and commands come "
                    f"first; choose other words for this question")
