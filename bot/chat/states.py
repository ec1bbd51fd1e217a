"""Dialog states, declared like aiogram's StatesGroup: a typo in a state is an AttributeError at
import, and the engine (and the tests) can enumerate every group and state.

    class Registration(Dialogs, prefix="reg", title="注册", cancelled="reg_cancelled.j2"):
        phone = State("reg_ask_phone.j2", label="填写手机号")

A state's stored name is "<prefix>.<attribute>" ("reg.phone"), the same string dialogs were stored
under before states were declared, so dialogs in the database or Redis keep working.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import ClassVar


class State:
    """One step of a dialog. `question` is the template that asks it (again, after a global
    command answered something else); `label` names the step where a member sees it."""

    def __init__(self, question: str | None = None, *, label: str = ""):
        self.question = question
        self.label = label
        self.name = ""
        self.group: type[Dialogs] | None = None

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<State {self.name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            return self.name == other.name
        return isinstance(other, str) and self.name == other

    def __hash__(self) -> int:
        return hash(self.name)


_GROUPS: list[type[Dialogs]] = []
_BY_NAME: dict[str, State] = {}


class Dialogs:
    """A group of states: one multi-step conversation. `title` completes "继续…：" when the engine
    re-asks; `cancelled` answers 取消; `idle` forgets a dialog left alone that long (the message
    is then taken as if there were no dialog); `greeting` opens it (see Context.begin)."""

    prefix: ClassVar[str]
    title: ClassVar[str]
    cancelled: ClassVar[str]
    greeting: ClassVar[str | None]
    idle: ClassVar[dt.timedelta | None]
    states: ClassVar[tuple[State, ...]]
    staff: ClassVar[bool]  # a till dialog: a staff command meanwhile answers, then it re-asks
    # A relay: every message is the dialog's (passed on to a person), so no global command acts
    # in it, not even 取消; its own routes take the words that end it. The one exception to
    # "in any dialog, the global commands still work".
    relay: ClassVar[bool]

    def __init_subclass__(cls, *, prefix: str, title: str, cancelled: str,
                          greeting: str | None = None, idle: dt.timedelta | None = None,
                          staff: bool = False, relay: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.prefix, cls.title, cls.cancelled = prefix, title, cancelled
        cls.greeting, cls.idle, cls.staff, cls.relay = greeting, idle, staff, relay
        states = []
        for value in vars(cls).values():
            if isinstance(value, State):
                value.name, value.group = f"{prefix}.{value.attribute}", cls
                if value.name in _BY_NAME:
                    raise ValueError(f"dialog state {value.name} is declared twice")
                _BY_NAME[value.name] = value
                states.append(value)
        cls.states = tuple(states)
        _GROUPS.append(cls)

    @classmethod
    def first(cls) -> State:
        return cls.states[0]

    @classmethod
    def holds(cls, state: str | State | None) -> bool:
        found = find(state)
        return found is not None and found.group is cls


def find(name: str | State | None) -> State | None:
    """The declared state a stored dialog is in (None outside a dialog, or for a name no longer
    declared)."""
    if name is None:
        return None
    return _BY_NAME.get(str(name))


def groups() -> Iterator[type[Dialogs]]:
    yield from _GROUPS


def all_states() -> Iterator[State]:
    for group in _GROUPS:
        yield from group.states


# --- the dialogs ---

class Registration(Dialogs, prefix="reg", title="注册", cancelled="reg_cancelled.j2",
                   greeting="reg_greeting.j2"):
    """Joining: consent → phone → SMS code → name → birthday (bot/handlers/registration.py)."""

    consent = State("reg_consent.j2", label="同意隐私政策")
    phone = State("reg_ask_phone.j2", label="填写手机号")
    code = State("reg_ask_code.j2", label="填写短信验证码")
    name = State("reg_question_name.j2", label="填写称呼")
    birthday = State("reg_ask_birthday.j2", label="填写生日")
    # Come back after a long pause: continue or start over?
    resume = State("reg_resume.j2")

    steps: ClassVar[tuple[State, ...]]


Registration.steps = (Registration.consent, Registration.phone, Registration.code,
                      Registration.name, Registration.birthday)


class Exchange(Dialogs, prefix="exchange", title="兑换", cancelled="exchange_cancelled.j2",
               idle=dt.timedelta(minutes=10)):
    """Points for a coupon: choose a number, confirm (bot/handlers/coupons.py)."""

    choose = State("exchange_pick.j2")
    confirm = State("exchange_confirm_unclear.j2")


class Erasure(Dialogs, prefix="erase", title="注销", cancelled="erase_cancelled.j2"):
    """注销: confirm, then an SMS code (bot/handlers/privacy.py)."""

    confirm = State("erase_warning.j2")
    code = State("erase_ask_code.j2")


class Profile(Dialogs, prefix="profile", title="修改资料", cancelled="profile_cancelled.j2",
              idle=dt.timedelta(minutes=15)):
    """修改资料: what to change → a new name | a new phone → its SMS code | a birthday (only
    while none is set) (bot/handlers/profile.py)."""

    menu = State("profile_menu.j2")
    name = State("profile_ask_name.j2")
    phone = State("profile_ask_phone.j2")
    code = State("profile_ask_code.j2")
    birthday = State("profile_ask_birthday.j2")


class Support(Dialogs, prefix="support", title="人工客服", cancelled="support_ended.j2",
              relay=True):
    """人工: while a thread is open every message goes to the person on duty, the words of the
    global commands too (积分, 帮助 …); 取消 or 结束 ends it (bot/handlers/support.py). It ends
    on its own when the thread closes (结束 <n> by staff, or idle)."""

    talking = State("support_talking.j2")


# --- at the till (staff dialogs; each asks before money or trust is spent) ---

class PurchaseCheck(Dialogs, prefix="purchase", title="记录消费", cancelled="purchase_cancelled.j2",
                    idle=dt.timedelta(minutes=10), staff=True):
    """消费 above [points] confirm_above: 确认 records it (bot/handlers/staff.py)."""

    confirm = State("purchase_confirm_unclear.j2")


class CouponAmount(Dialogs, prefix="redeem", title="核销", cancelled="redeem_cancelled.j2",
                   idle=dt.timedelta(minutes=10), staff=True):
    """核销 of a coupon whose rule needs the purchase amount: the amount, or 确认 to use it
    without one; an amount above [points] confirm_above is confirmed first, as 消费's is
    (bot/handlers/coupons.py)."""

    amount = State("redeem_ask_amount.j2")
    # The amount given is above [points] confirm_above: 确认 records it.
    big = State("redeem_confirm_big_unclear.j2")


class PunchSale(Dialogs, prefix="punch", title="开卡", cancelled="punch_sale_cancelled.j2",
                idle=dt.timedelta(minutes=10), staff=True):
    """开卡 of a product the member already holds with visits left: 确认 sells another
    (bot/handlers/staff.py)."""

    confirm = State("punch_sale_confirm_unclear.j2")


class BroadcastConfirm(Dialogs, prefix="broadcast", title="群发",
                       cancelled="broadcast_cancelled.j2", idle=dt.timedelta(minutes=10),
                       staff=True):
    """群发 <分群> <模板名或文字>: the preview is shown, 确认 starts the campaign, 取消 cancels
    it (bot/handlers/broadcast.py)."""

    confirm = State("broadcast_confirm_unclear.j2")


# --- bookings ---

class Booking(Dialogs, prefix="book", title="预约", cancelled="booking_cancelled.j2",
              idle=dt.timedelta(minutes=15)):
    """预约: service → day → time → who (skipped when one resource serves the service) →
    确认; a taken time offers the nearest free ones and the waitlist (bot/handlers/booking.py).
    改约 <预约号> starts at the day step, with the booking being moved in the dialog's data."""

    service = State("booking_ask_service.j2")
    day = State("booking_ask_day.j2")
    time = State("booking_ask_time.j2")
    resource = State("booking_ask_resource.j2")
    confirm = State("booking_ask_confirm.j2")
    # The time wanted is taken: one of the nearest free times, or 候补 to wait for it.
    full = State("booking_ask_full.j2")


# --- ratings ---

class Rating(Dialogs, prefix="rate", title="评价", cancelled="rating_cancelled.j2",
             idle=dt.timedelta(hours=12)):
    """评价, or the question after a visit (bot/notifications/ratings.py starts it only for a
    member in no dialog): stars 1–5 → a comment or 跳过 → thanks (bot/handlers/ratings.py)."""

    stars = State("rating_ask_stars.j2")
    comment = State("rating_ask_comment.j2")
