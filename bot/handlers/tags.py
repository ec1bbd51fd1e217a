"""标签: staff tag members, for segments to select by (tag=瑜伽 in docs/segments.md).

    标签 <手机号|卡号>               the member's tags
    标签 <手机号|卡号> 瑜伽 VIP      add tags
    标签 <手机号|卡号> -瑜伽         remove one (adding and removing may mix in one message)
"""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_command
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.tags import normalize_tag
from bot.services import members, tags
from bot.services import staff as staff_service
from bot.services.staff import Actor

router = Router("tags")

USAGE = "标签 <手机号|卡号> [标签 -标签 …]"
MAX_WORDS = 5  # tags in one message


@staff_command("标签", "打标签", action="tag_member", usage=USAGE, args=(1, 1 + MAX_WORDS),
               on=router)
async def tag(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    masked = mask_phone(members.phone_of(ctx.bot, member))
    words = parts[1:]
    if len(words) == MAX_WORDS and len(words[-1].split()) > 1:  # the split kept the rest
        return ctx.reply("staff_usage.j2", usage=f"{USAGE}（一次最多 {MAX_WORDS} 个）")
    add, remove = [], []
    for word in words:
        removing = word[:1] in ("-", "－")
        name = normalize_tag(word[1:] if removing else word)
        if name is None:
            return ctx.reply("tag_bad.j2", text=word)
        (remove if removing else add).append(name)
    if not words:
        # Reading a member's data is logged like 查询.
        await staff_service.audit(actor, "lookup", member=member, detail="tags")
        return ctx.reply("tags_staff.j2", member=member, masked=masked,
                         tags=await tags.tags_of(member.id), added=[], removed=[])
    change = await tags.change(member, add=add, remove=remove, actor=actor, now=ctx.now)
    return ctx.reply("tags_staff.j2", member=member, masked=masked, tags=change.tags,
                     added=change.added, removed=change.removed)
