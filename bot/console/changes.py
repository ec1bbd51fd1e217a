"""An audit entry's change (its `before` and `after` dicts) and note, in the shop's words:
日志 and a member's 操作记录 show 「积分 1330 → 4331，调整 +3001」, not the stored JSON's keys,
None and UTC ISO times."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.services.staff import ROLE_NAMES

LABELS = {
    "points": "积分", "delta": "调整", "tier": "等级", "floor": "保底等级", "coupon": "券码",
    "coupons": "券码", "template": "券", "status": "状态", "role": "角色", "store": "门店",
    "active": "在职", "card": "次卡", "card_no": "卡号", "product": "次卡", "remaining": "剩余次数",
    "stored_value": "储值余额", "amount": "金额", "bonus": "赠送", "purchase": "消费流水",
    "reversed": "冲回积分", "wechat": "微信", "tags": "标签", "booking": "预约",
    "service": "项目", "resource": "人员", "starts_at": "时间", "segment": "分群",
    "channels": "渠道", "holdout": "对照组%", "at": "定时", "export": "导出",
    "messages": "消息", "marketing_opt_out_at": "退订时间", "marketing_opt_in_at": "重新订阅时间",
}
MONEY = {"stored_value", "amount", "bonus"}  # kept in fen
STATUSES = {"draft": "草稿", "scheduled": "已排期", "running": "发送中", "paused": "已暂停",
            "stale": "错过排期", "done": "已发完", "cancelled": "已取消", "issued": "可用",
            "redeemed": "已使用", "expired": "已过期", "revoked": "已作废"}


def _value(key: str, value: Any, tz: dt.tzinfo) -> str:
    if value is None:
        return "无"
    if isinstance(value, bool):
        return "是" if value else "否"
    if key == "role":
        return ROLE_NAMES.get(value, str(value))
    if key == "status":
        return STATUSES.get(value, str(value))
    if key in MONEY and isinstance(value, int):
        return f"¥{value / 100:,.2f}"
    if key == "delta" and isinstance(value, int):
        return f"{value:+d}"
    if isinstance(value, list):
        return "、".join(str(v) for v in value) or "无"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return dt.datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            pass
    return str(value)


def change(before: dict[str, Any] | None, after: dict[str, Any] | None, tz: dt.tzinfo) -> str:
    """「label old → new」 for what changed, 「label value」 for what is only told."""
    before, after = before or {}, after or {}
    parts = []
    for key in [*before, *(k for k in after if k not in before)]:
        label = LABELS.get(key, key)
        if key in before and key in after and before[key] != after[key]:
            parts.append(f"{label} {_value(key, before[key], tz)} → {_value(key, after[key], tz)}")
        else:
            shown = after[key] if key in after else before[key]
            parts.append(f"{label} {_value(key, shown, tz)}")
    return "，".join(parts)


def note(detail: str | None) -> str:
    """The entry's note without the keys the code keeps in it (console:tier:1:… nonces)."""
    detail = detail or ""
    if detail == "console":
        return "后台"
    if detail.startswith("console:"):
        return ""
    if detail.startswith("campaign "):
        return "群发 #" + detail.removeprefix("campaign ")
    return detail


def who(actor: str) -> str:
    """「小王」 for "staff:3 小王" (the id is in the 员工 filter); "cli" is the shop's computer."""
    if actor == "cli":
        return "命令行"
    kind, _, rest = actor.partition(" ")
    if kind.startswith("staff:") and rest:
        return rest
    return actor
