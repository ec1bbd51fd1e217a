"""The global commands: what works in every dialog state, declared here and nowhere else.

Two kinds. An interrupting command ends the dialog (or, for staff commands, suspends it: the
dialog waits for its next answer), then does its job as if there had been no dialog (取消 only
ends it, with the dialog's own goodbye). In a till dialog (a staff one) a staff command is
answered like a non-interrupting one, unless it asks a question of its own, which replaces the
dialog's. A non-interrupting one answers, and the
engine re-asks the dialog's current question in the same reply ("…\n\n继续注册：请输入您的手机号").
A dialog's own answers (a phone number, a code, 同意) still go to the dialog first; the handlers
that do each command's job register with `router.global_command(...)` (bot/chat/routing.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class GlobalCommand:
    name: str
    interrupts: bool
    words: tuple[str, ...] = ()  # the whole message (spaces inside it do not count)
    commands: tuple[str, ...] = ()  # the first word; the handler reads the rest
    clicks: tuple[str, ...] = ()  # custom-menu keys
    staff: bool = False  # staff commands: only from an account that is (or was) staff
    # An interrupting command that suspends: the dialog waits, untouched, for its next answer
    # (an employee's own registration must not be lost to a 消费 at the till).
    suspends: bool = False
    sample: str = ""  # a message that is this command, for the state × command matrix test

    def __repr__(self) -> str:
        return f"<GlobalCommand {self.name}>"


# --- interrupting ---

CANCEL = GlobalCommand("cancel", True, words=("取消", "退出", "算了"), sample="取消")
BIND = GlobalCommand("bind", True, commands=("绑定",), sample="绑定 {invite}")
# Every command registered with staff_command (bot/chat/staff_commands.py), and 员工帮助.
STAFF = GlobalCommand("staff", True, staff=True, suspends=True, sample="查询 {phone}")
ERASE = GlobalCommand("erase", True, words=("注销", "注销会员", "删除我的数据"), sample="注销")
# Menu buttons that start another flow.
JOIN = GlobalCommand("join", True, clicks=("JOIN",), sample="click:JOIN")
EXCHANGE = GlobalCommand("exchange", True, words=("兑换", "积分兑换", "换券"),
                         clicks=("EXCHANGE",), sample="积分兑换")
# 预约 alone starts the booking dialog; 预约 洗剪吹 明天 15:00 books in one line.
BOOK = GlobalCommand("book", True, words=("在线预约", "我要预约"), commands=("预约",),
                     clicks=("BOOK",), sample="预约")
# 改约 <预约号>: the booking dialog, for a new time of the same service.
MOVE_BOOKING = GlobalCommand("move_booking", True, commands=("改约", "改期"), sample="改约 1")
# 评价: the rating dialog, for the member's last visit not rated yet.
RATE = GlobalCommand("rate", True, words=("评价", "我要评价", "评分"), sample="评价")
# 人工: a person on duty takes the conversation (the relay dialog, Support in states.py).
SUPPORT = GlobalCommand("support", True, words=("人工", "转人工", "客服", "人工客服"),
                        sample="人工")
# 修改资料: the dialog for a new name, a new phone, a birthday not given yet.
PROFILE = GlobalCommand("profile", True, words=("修改资料", "修改信息", "编辑资料", "更新资料"),
                        clicks=("PROFILE",), sample="修改资料")

# --- non-interrupting ---

HELP = GlobalCommand("help", False, words=("帮助", "help", "HELP", "?", "？", "菜单"),
                     clicks=("HELP",), sample="帮助")
CARD = GlobalCommand("card", False,
                     words=("积分", "余额", "会员卡", "我的", "我的积分", "查积分", "会员", "卡号",
                            "我的会员卡"),
                     clicks=("MY_CARD",), sample="积分")
COUPONS = GlobalCommand("coupons", False, words=("优惠券", "我的优惠券", "卡券", "我的券"),
                        clicks=("MY_COUPONS",), sample="优惠券")
COUPON_HISTORY = GlobalCommand("coupon_history", False, words=("历史券", "已用券", "过期券"),
                               sample="历史券")
POINTS_HISTORY = GlobalCommand("points_history", False, words=("明细", "积分明细", "记录"),
                               sample="明细")
CHECKIN = GlobalCommand("checkin", False, words=("签到", "打卡", "每日签到"),
                        clicks=("CHECKIN",), sample="签到")
INVITE = GlobalCommand("invite", False, words=("邀请", "邀请好友", "推荐", "推荐好友"),
                       clicks=("INVITE",), sample="邀请")
MY_DATA = GlobalCommand("my_data", False, words=("我的数据", "个人信息", "我的信息"),
                        sample="我的数据")
OPT_OUT = GlobalCommand("opt_out", False, words=("退订", "TD", "td", "取消订阅", "不要推送"),
                        sample="退订")
# 退订's way back: marketing consent given again.
OPT_IN = GlobalCommand("opt_in", False, words=("订阅", "恢复推送", "重新订阅"), sample="订阅")
MY_BOOKINGS = GlobalCommand("my_bookings", False, words=("我的预约", "查预约", "预约记录"),
                            clicks=("MY_BOOKINGS",), sample="我的预约")
CANCEL_BOOKING = GlobalCommand("cancel_booking", False, commands=("取消预约",),
                               sample="取消预约 1")
# A place the waitlist holds for the member becomes their booking.
ACCEPT_OFFER = GlobalCommand("accept_offer", False, words=("确认候补",), sample="确认候补")
# A [[faq]] topic or keyword sent alone (the words come from config.toml: handlers/faq.py).
FAQ = GlobalCommand("faq", False, sample="营业时间")
LEAVE_WAITLIST = GlobalCommand("leave_waitlist", False, words=("取消候补", "不等了"),
                               sample="取消候补")

ALL = (CANCEL, BIND, STAFF, ERASE, JOIN, EXCHANGE, BOOK, MOVE_BOOKING, PROFILE, SUPPORT, RATE,
       HELP, CARD, COUPONS, COUPON_HISTORY, POINTS_HISTORY, CHECKIN, INVITE, MY_DATA, OPT_OUT,
       OPT_IN, MY_BOOKINGS, CANCEL_BOOKING, ACCEPT_OFFER, LEAVE_WAITLIST, FAQ)
