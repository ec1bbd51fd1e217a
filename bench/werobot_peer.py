"""The peer for bench/webhook.py: the same 积分 answer, written the way a WeRoBot user would.

    .venv/bin/pip install werobot waitress      # bench-only, not in pyproject.toml
    .venv/bin/python bench/werobot_peer.py --db /path/to/memberbot.db --port 8888

WeRoBot (PyPI `werobot`) in safe mode, configured as its docs say
(`WeRoBot(token=..., encoding_aes_key=..., app_id=...)`), with one text handler that looks the
sender up in memberbot's SQLite database with plain `sqlite3` (follower → member by openid,
then the 12-month spend, live punch cards and soon-expiring points, the same reads memberbot's
card handler makes) and replies with the same card text memberbot sends.

Run with `robot.run(server=...)`, as WeRoBot's deployment docs say. The default, `auto`, tries
Waitress, Paste, Twisted, CherryPy and then the standard library's wsgiref, and the docs say that
once one of those servers is installed `robot.run` is fit for production. We pass `waitress`
explicitly (the first one `auto` picks) so the run does not depend on what else is installed:
one process, Waitress' default 4 threads, HTTP/1.1 keep-alive. `--server wsgiref` gives the
fallback that `auto` lands on when nothing is installed: one thread, one connection at a time.

Sessions are on, because they are WeRoBot's default (docs: "Session 在 WeRoBot 中默认开启"):
a SQLiteStorage read and a write with a commit for every message, in a file of its own.
`--no-session` turns them off (`SESSION_STORAGE = False`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import threading
import tomllib
import zoneinfo
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


def load_shop(config_path: Path = CONFIG) -> tuple[str, str, list[tuple[str, int]]]:
    """Shop name, time zone and [(tier, min_spend yuan)] from the same config.toml."""
    raw = tomllib.loads(config_path.read_text(encoding="utf-8-sig"))
    shop = raw.get("shop", {})
    tiers = [(t["name"], int(t["min_spend"])) for t in raw.get("tiers", [])]
    return (shop.get("name", "示例门店"), shop.get("timezone", "Asia/Shanghai"),
            tiers or [("普通会员", 0)])


def card_text(shop: str, tiers: list[tuple[str, int]], member: sqlite3.Row, spend_fen: int,
              punch_cards: list[sqlite3.Row], expiring: list[sqlite3.Row]) -> str:
    names = [name for name, _ in tiers]
    rank = names.index(member["tier"]) if member["tier"] in names else 0
    lines = [f"【{shop} 会员卡】"]
    if member["name"]:
        lines.append(f"{member['name']}，您好！")
    lines += [
        f"卡号：{member['card_no']}",
        f"等级：{member['tier']}",
        f"积分：{member['points']}",
        f"储值余额：¥{member['stored_value'] / 100:.2f}",
    ]
    lines += [f"{c['name']}：剩余 {c['remaining']} 次，{c['expires_on']} 到期"
              for c in punch_cards]
    lines += [f"⚠ {e['points']} 积分将于 {e['expires_on']} 到期" for e in expiring]
    if rank + 1 < len(tiers):
        name, min_spend = tiers[rank + 1]
        remaining = max(0, min_spend * 100 - spend_fen)
        lines.append(f"再消费 ¥{remaining / 100:.2f} 即可升级为{name}。")
    else:
        lines.append("您已是最高等级，感谢一路相伴！")
    lines.append("回复「明细」查看积分记录，「签到」领每日积分，「邀请」邀请好友。")
    return "\n".join(lines)


def make_robot(db_path: str, *, token: str, aes_key: str, app_id: str,
               session_path: str | None):
    import werobot
    from werobot.session.sqlitestorage import SQLiteStorage

    shop, timezone, tiers = load_shop()
    tz = zoneinfo.ZoneInfo(timezone)
    local = threading.local()  # one connection per server thread, as sqlite3 wants

    def db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(db_path)
            conn.row_factory = sqlite3.Row
        return conn

    robot = werobot.WeRoBot(token=token, encoding_aes_key=aes_key, app_id=app_id)
    if session_path is None:
        robot.config["SESSION_STORAGE"] = False
    else:
        # The default storage, only in a file of the bench's instead of the working directory.
        robot.config["SESSION_STORAGE"] = SQLiteStorage(session_path)

    @robot.filter("积分")
    def card(message):
        conn = db()
        member = conn.execute(
            "SELECT m.id, m.card_no, m.name, m.tier, m.points, m.stored_value "
            "FROM follower f JOIN member m ON m.id = f.member_id WHERE f.openid = ?",
            (message.source,),
        ).fetchone()
        if member is None:
            return "您还不是会员，回复「注册」加入。"
        now = dt.datetime.now(dt.UTC)
        today = now.astimezone(tz).date()
        # Datetimes are stored as text ("2026-01-01 00:00:00.000000+00:00"), dates as ISO.
        since = (now - dt.timedelta(days=365)).isoformat(" ", "microseconds")
        spend = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM purchase "
            "WHERE member_id = ? AND voided_at IS NULL AND created_at >= ?",
            (member["id"], since),
        ).fetchone()[0]
        punch_cards = conn.execute(
            "SELECT name, remaining, expires_on FROM punch_card "
            "WHERE member_id = ? AND remaining > 0 AND expires_on >= ? ORDER BY expires_on, id",
            (member["id"], today.isoformat()),
        ).fetchall()
        expiring = conn.execute(
            "SELECT expires_on, SUM(remaining) AS points FROM points_entry "
            "WHERE member_id = ? AND remaining > 0 AND expires_on <= ? "
            "GROUP BY expires_on ORDER BY expires_on",
            (member["id"], (today + dt.timedelta(days=30)).isoformat()),
        ).fetchall()
        return card_text(shop, tiers, member, spend, punch_cards, expiring)

    return robot


def run_peer(port: int, db_path: str, session_path: str | None, server: str, token: str,
             aes_key: str, app_id: str) -> None:
    """Entry point for bench/webhook.py (multiprocessing spawn) and the command line."""
    robot = make_robot(db_path, token=token, aes_key=aes_key, app_id=app_id,
                       session_path=session_path)
    robot.config["HOST"] = "127.0.0.1"
    robot.config["PORT"] = port
    # enable_pretty_logging only formats WeRoBot's own logger (exceptions, warnings).
    robot.run(server=server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="memberbot's SQLite file")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--server", default="waitress", help="passed to robot.run(server=...)")
    parser.add_argument("--session", default="werobot_session.sqlite3",
                        help="SQLiteStorage file (the default storage)")
    parser.add_argument("--no-session", action="store_true")
    parser.add_argument("--token", default="benchToken1")
    parser.add_argument("--aes-key", default="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    parser.add_argument("--app-id", default="wxbench0000000001")
    args = parser.parse_args()
    run_peer(args.port, args.db, None if args.no_session else args.session, args.server,
             args.token, args.aes_key, args.app_id)


if __name__ == "__main__":
    main()
