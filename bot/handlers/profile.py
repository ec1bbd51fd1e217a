"""修改资料 (my details): a member changes their name, their phone number (proved by an SMS code
to the new number, under the registration's limits), or adds the birthday they skipped; staff
change them with 改资料 and 改生日 (a birthday once set changes only there).

The states are declared in bot/chat/states.py (Profile). Like registration, the phone step
answers every number alike: whether a number is another member's is said only after the code
to it was answered, so nobody learns who is a member by trying numbers.
"""

from __future__ import annotations

from bot.chat import commands, phone_proof
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_command
from bot.chat.states import Profile
from bot.infra.vault import mask_phone
from bot.notifications import notices
from bot.notifications.replies import Reply
from bot.rules.parsing import BadBirthday, name_problem, normalize_phone, parse_code, read_birthday
from bot.services import members, profile, verification
from bot.services.staff import Actor

router = Router("profile")

PURPOSE = "profile_phone"  # the SMS codes' purpose (registration's are "register")
NAME_WORDS = ("姓名", "称呼", "名字")
PHONE_WORDS = ("手机", "手机号", "电话")
EDIT_USAGE = "改资料 <手机号|卡号> 姓名|手机 <新的>"
BIRTHDAY_USAGE = "改生日 <手机号|卡号> <日期>"


# --- the dialog's questions ---

@router.question_values(Profile)
def _question(ctx: Context) -> dict:
    member = ctx.member
    new_phone = phone_proof.kept(ctx)
    return {
        "member": member,
        "masked": mask_phone(members.phone_of(ctx.bot, member)) if member else "",
        "birthday": (profile.birthday_text(member.birth_year, member.birth_month,
                                           member.birth_day) if member else None),
        "new_masked": mask_phone(new_phone) if new_phone else "",
    }



def _a_name(ctx: Context) -> bool:
    return name_problem(ctx.text) is None and not ctx.is_command(ctx.text)




def _a_birthday(ctx: Context) -> bool:
    try:
        read_birthday(ctx.text, ctx.bot.today())
    except BadBirthday:
        return False
    return True


def _gone(ctx: Context) -> Reply:
    """A dialog whose member is no longer one (erased meanwhile)."""
    ctx.dialog.clear()
    return ctx.not_registered()


def _done(ctx: Context, change: profile.Change) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("profile_done.j2", change=change.change, member=change.member,
                     masked=mask_phone(members.phone_of(ctx.bot, change.member)))


def _refused(ctx: Context, refused: profile.ProfileRefused) -> Reply:
    ctx.dialog.clear()
    return ctx.reply(refused.reason, **refused.values)


# --- entering ---

@router.global_command(commands.PROFILE, help="profile")
async def start(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    ctx.dialog.clear()
    ctx.dialog.set(Profile.menu)
    return ctx.ask(Profile.menu)


# --- what to change ---

@router.text("1", "称呼", "改称呼", "姓名", "改姓名", "名字", "改名", state=Profile.menu)
async def pick_name(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    ctx.dialog.set(Profile.name)
    return ctx.ask(Profile.name)


@router.text("2", "手机", "手机号", "改手机号", "换手机", state=Profile.menu)
async def pick_phone(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    ctx.dialog.set(Profile.phone)
    return ctx.ask(Profile.phone)


@router.text("3", "生日", "填生日", "补填生日", state=Profile.menu)
async def pick_birthday(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    if ctx.member.birth_month:
        ctx.dialog.clear()
        return ctx.reply("profile_birthday_set.j2")
    ctx.dialog.set(Profile.birthday)
    return ctx.ask(Profile.birthday)


# --- the answers ---

@router.answer(Profile.name, fits=_a_name)
async def name_given(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    try:
        change = await profile.change_name(ctx.member, ctx.text, key=ctx.key)
    except profile.ProfileRefused as refused:
        return _refused(ctx, refused)
    return _done(ctx, change)


@router.answer(Profile.phone, fits=phone_proof.a_phone)
async def phone_given(ctx: Context) -> Reply:
    # The same answer for every number, a member's or not (see the module's docstring); only
    # the member's own number is said at once, as it tells nothing new.
    if ctx.member is None:
        return _gone(ctx)
    phone = normalize_phone(ctx.text)
    if phone == members.phone_of(ctx.bot, ctx.member):
        ctx.dialog.clear()
        return ctx.reply("profile_same.j2", field="phone")
    phone_proof.keep(ctx, phone)
    return await _send_code(ctx, phone)


async def _send_code(ctx: Context, phone: str) -> Reply:
    return await phone_proof.send_code(ctx, phone, purpose=PURPOSE, code_step=Profile.code,
                                       sent="profile_code_sent.j2")


@router.text(*phone_proof.RESEND_WORDS, state=(Profile.phone, Profile.code))
async def resend(ctx: Context) -> Reply:
    phone = phone_proof.kept(ctx)
    if phone is None:
        ctx.dialog.set(Profile.phone)
        return ctx.ask(Profile.phone)
    return await _send_code(ctx, phone)


@router.text(*phone_proof.CHANGE_PHONE_WORDS, state=(Profile.phone, Profile.code))
async def other_phone(ctx: Context) -> Reply:
    ctx.dialog.set(Profile.phone)
    return ctx.ask(Profile.phone)


@router.answer(Profile.code, fits=phone_proof.a_code)
async def code_given(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    # A repeat of the message that made the change (its code is used up by now) gets the
    # change's answer again.
    earlier = await profile.made_by(ctx.key)
    if earlier is not None:
        return _done(ctx, earlier)
    phone = phone_proof.kept(ctx)
    if phone is None:
        ctx.dialog.set(Profile.phone)
        return ctx.ask(Profile.phone)
    check = await verification.check_code(ctx.bot, phone, ctx.inbound.user, PURPOSE,
                                          parse_code(ctx.text))
    if not check.ok:
        return ctx.reply(f"reg_code_{check.status}.j2", attempts_left=check.attempts_left)
    try:
        change = await profile.change_phone(ctx.bot, ctx.member, phone, key=ctx.key)
    except profile.ProfileRefused as refused:
        return _refused(ctx, refused)
    return _done(ctx, change)


@router.answer(Profile.birthday, fits=_a_birthday)
async def birthday_given(ctx: Context) -> Reply:
    if ctx.member is None:
        return _gone(ctx)
    birthday = read_birthday(ctx.text, ctx.bot.today())
    try:
        change = await profile.add_birthday(ctx.member, birthday, key=ctx.key)
    except profile.ProfileRefused as refused:
        return _refused(ctx, refused)
    return _done(ctx, change)


# --- not understood (after the global commands) ---

@router.message(state=Profile.menu)
async def menu_unclear(ctx: Context) -> Reply:
    return ctx.ask(Profile.menu)


@router.message(state=Profile.name)
async def not_a_name(ctx: Context) -> Reply:
    problem = "command" if ctx.is_command(ctx.text) else name_problem(ctx.text)
    return ctx.reply("reg_bad_name.j2", problem=problem, text=ctx.text)


@router.message(state=Profile.phone)
async def not_a_phone(ctx: Context) -> Reply:
    return ctx.reply("profile_bad_phone.j2")


@router.message(state=Profile.code)
async def not_a_code(ctx: Context) -> Reply:
    if phone_proof.kept(ctx) is None:
        ctx.dialog.set(Profile.phone)
        return ctx.ask(Profile.phone)
    return ctx.reply("reg_bad_code.j2")


@router.message(state=Profile.birthday)
async def not_a_birthday(ctx: Context) -> Reply:
    try:
        read_birthday(ctx.text, ctx.bot.today())
    except BadBirthday as bad:
        return ctx.reply("profile_bad_birthday.j2", reason=bad.reason, text=ctx.text)
    return ctx.reply("profile_bad_birthday.j2", reason=BadBirthday.FORMAT, text=ctx.text)


# --- staff: 改资料, 改生日 ---

def _staff_done(ctx: Context, change: profile.Change) -> Reply:
    # The member hears of a change staff made to their details (a new phone most of all: the
    # old one may be the one that was lost), once per change.
    ctx.bot.spawn(notices.profile_changed(ctx.bot, change.change), "profile notice")
    return ctx.reply("profile_staff_done.j2", change=change.change, member=change.member,
                     masked=mask_phone(members.phone_of(ctx.bot, change.member)))


@staff_command("改资料", action="edit_profile", usage=EDIT_USAGE, args=(3, 3), on=router)
async def edit(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    who, field, value = parts
    if field == "生日":
        return ctx.reply("staff_usage.j2", usage=BIRTHDAY_USAGE)
    if field not in NAME_WORDS + PHONE_WORDS:
        return ctx.reply("staff_usage.j2", usage=EDIT_USAGE)
    member = await members.lookup(ctx.bot, who)
    if field in NAME_WORDS:
        problem = name_problem(value)
        if problem is not None:
            return ctx.reply("reg_bad_name.j2", problem=problem, text=value)
        change = await profile.change_name(member, value, key=ctx.key, actor=actor)
        return _staff_done(ctx, change)
    phone = normalize_phone(value)
    if phone is None:
        return ctx.reply("profile_staff_bad_phone.j2", text=value)
    try:
        change = await profile.change_phone(ctx.bot, member, phone, key=ctx.key, actor=actor)
    except profile.ProfileRefused as refused:
        if refused.reason == "profile_phone_taken.j2":  # the member's words say "验证成功"
            return ctx.reply("profile_staff_phone_taken.j2", **refused.values)
        raise
    return _staff_done(ctx, change)


@staff_command("改生日", action="set_birthday", usage=BIRTHDAY_USAGE, args=(2, 2), on=router)
async def set_birthday(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    try:
        birthday = read_birthday(parts[1], ctx.bot.today())
    except BadBirthday as bad:
        return ctx.reply("profile_staff_bad_birthday.j2", reason=bad.reason, text=parts[1])
    change = await profile.set_birthday(member, birthday, key=ctx.key, actor=actor)
    return _staff_done(ctx, change)
