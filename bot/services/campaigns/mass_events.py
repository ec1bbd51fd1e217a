"""WeChat's MASSSENDJOBFINISH event: the counts of one mass send (how many it was for, how many
WeChat filtered out — refused, or already at 4 this month —, sent, failed), kept on its job."""

from __future__ import annotations

import logging

from bot.models import MassJob

log = logging.getLogger("memberbot.campaigns")


async def record_mass_job_finish(bot, msg_id: int, *, status: str, total: int, filtered: int,
                                 sent: int, errors: int) -> bool:
    """True if the msg_id is one of our mass sends. WeChat may repeat the event (a retry):
    the counts are simply written again."""
    updated = await MassJob.filter(msg_id=msg_id).update(
        finish_status=status[:32], total_count=total, filter_count=filtered, sent_count=sent,
        error_count=errors)
    if not updated:
        log.warning("MASSSENDJOBFINISH for mass send %s, which is not one of ours", msg_id)
    elif filtered or errors:
        log.info("mass send %s: %s of %s filtered by WeChat, %s failed", msg_id, filtered,
                 total, errors)
    return bool(updated)
