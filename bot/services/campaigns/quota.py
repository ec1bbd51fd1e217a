"""Each member's WeChat mass messages this month, taken before a mass send by one conditional
UPDATE (so two campaigns at once cannot both spend a member's 4th), and given back when the send
did not go out. Call both inside the transaction that marks the deliveries, so a crash never
leaves a taken count without its delivery."""

from __future__ import annotations

from bot.infra import sql


async def take(member_ids: list[int], month: str, cap: int) -> set[int]:
    """The members who had a mass message left this month; their count is now one higher."""
    if not member_ids:
        return set()
    values = ", ".join(f"(${2 * i + 1}, ${2 * i + 2}, 0)" for i in range(len(member_ids)))
    params: list = []
    for member_id in member_ids:
        params += [member_id, month]
    await sql.execute(f"INSERT INTO mass_quota (member_id, month, count) VALUES {values} "
                      "ON CONFLICT (member_id, month) DO NOTHING", *params)
    rows = await sql.fetch(
        "UPDATE mass_quota SET count = count + 1 WHERE month = $1 AND count < $2 AND member_id "
        f"IN ({sql.placeholders(3, len(member_ids))}) RETURNING member_id",
        month, cap, *member_ids)
    return {row["member_id"] for row in rows}


async def give_back(member_ids: list[int], month: str) -> None:
    if member_ids:
        await sql.execute(
            "UPDATE mass_quota SET count = count - 1 WHERE month = $1 AND count > 0 AND member_id "
            f"IN ({sql.placeholders(2, len(member_ids))})", month, *member_ids)
