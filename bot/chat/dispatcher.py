"""From an Inbound to a reply: dedup → who is it → dialog state → router → handler.

WeChat retries a message up to three times when it has no answer within 5 s. The first copy
claims the message's dedup key in the database (a unique row); a copy that finds the key taken
never acts: it waits for the first copy's reply and answers the same. A handler that runs longer
than reply_timeout is left to finish; WeChat gets "success" and the reply goes out as a
customer-service message.

The claim is a lease (bot/chat/dedup.py) that the acting copy renews while its handler runs. If
that copy's process dies, the lease runs out and the next copy takes the claim over and acts in
its place: a crash loses no message that WeChat retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from bot.chat.context import Context
from bot.chat.inbound import Inbound
from bot.chat.routing import Router
from bot.notifications import cs_quota
from bot.notifications.replies import Reply, Text, from_json, to_json
from bot.services import members

if TYPE_CHECKING:
    from bot.runtime import Bot

log = logging.getLogger("memberbot.inbound")

POLL_INTERVAL = 0.05


class Dispatcher:
    def __init__(self, bot: Bot, router: Router):
        self.bot = bot
        self.router = router
        self.timeout = bot.config.server.reply_timeout

    async def feed(self, inbound: Inbound) -> Reply | None:
        started = time.perf_counter()
        if await self.bot.dedup.claim(inbound):
            reply, outcome = await self._run(inbound)
        else:
            reply, outcome = await self._await_first_copy(inbound)
        elapsed = time.perf_counter() - started
        self.bot.metrics.inbound.labels(inbound.channel, inbound.kind, outcome).inc()
        self.bot.metrics.latency.labels(inbound.channel).observe(elapsed)
        log.info("inbound channel=%s kind=%s outcome=%s latency_ms=%.1f user=…%s",
                 inbound.channel, inbound.kind, outcome, elapsed * 1000, inbound.user[-6:])
        return reply

    async def _run(self, inbound: Inbound, wait: float | None = None
                   ) -> tuple[Reply | None, str]:
        task = asyncio.ensure_future(self._process(inbound))
        done = await self._wait_holding(task, inbound.dedup_key, wait or self.timeout)
        if not done:
            await self.bot.dedup.finish(inbound.dedup_key, "deferred")
            self.bot.spawn(self._deliver_later(inbound, task), f"deferred:{inbound.dedup_key}")
            return None, "deferred"
        try:
            reply = task.result()
        except Exception:
            log.exception("handler failed for %s", inbound.kind)
            reply = Text(self.bot.templates.render("error.j2"))
            await self.bot.dedup.finish(inbound.dedup_key, "failed", to_json(reply))
            return reply, "failed"
        await self.bot.dedup.finish(inbound.dedup_key, "replied", to_json(reply))
        return reply, "replied" if reply else "silent"

    async def _deliver_later(self, inbound: Inbound, task: asyncio.Future) -> None:
        try:
            reply = await task
        except Exception:
            log.exception("deferred handler failed for %s", inbound.kind)
            reply = Text(self.bot.templates.render("error.j2"))
            # No stored reply: a later retry still gets "success", the apology goes out below.
            await self.bot.dedup.finish(inbound.dedup_key, "failed")
        if reply is not None and inbound.channel == "wechat":
            await self.bot.outbox.wechat(inbound.user, reply, key=f"reply:{inbound.dedup_key}",
                                         purpose="reply")

    async def _process(self, inbound: Inbound) -> Reply | None:
        user = f"{inbound.channel}:{inbound.user}"
        if inbound.channel == "wechat":
            # With the dialogs in the database, one statement answers all three.
            follower, member, dialog = await self.bot.dialogs.load_with_member(user, inbound.user)
            await cs_quota.note_inbound(follower, inbound.kind, self.bot.now())
        else:
            follower, member = None, await members.find_by_phone(self.bot, inbound.user)
            dialog = await self.bot.dialogs.load(user)
        ctx = Context(inbound, self.bot, dialog, follower, member, router=self.router)
        reply = await self.router.dispatch(ctx)
        await self.bot.dialogs.save(dialog)
        return reply

    async def _wait_holding(self, task: asyncio.Future, key: str, wait: float) -> bool:
        """Wait up to `wait` seconds for the handler; True if it is done. Meanwhile the claim's
        lease is renewed, so that no other copy takes this live one's place. (No task of its
        own: a quick handler costs nothing more than before.)"""
        lease = self.bot.dedup.lease
        deadline = time.monotonic() + wait
        holding = True
        while (left := deadline - time.monotonic()) > 0:
            # asyncio.wait, not wait_for: a TimeoutError the handler raises itself (a database
            # timeout) must count as a failure, not as "slow, answer later".
            done, _ = await asyncio.wait({task}, timeout=min(left, lease / 3))
            if done:
                return True
            if holding:
                holding = await self._renew(key)
        return task.done()

    async def _renew(self, key: str) -> bool:
        """False once the claim is lost: this worker stalled past its lease and a retry took
        over. Both then run, which the handlers' idempotency keys make harmless."""
        try:
            if await self.bot.dedup.renew(key):
                return True
        except Exception:
            # A renewal that fails (the database busy) is tried again; the lease has slack.
            log.exception("renewing the claim on %s failed", key)
            return True
        log.warning("lost the claim on %s to another copy", key)
        return False

    async def _await_first_copy(self, inbound: Inbound) -> tuple[Reply | None, str]:
        """A retry: answer what the first copy answered, without acting again; unless the first
        copy's worker is gone (its lease ran out), then act in its place."""
        dedup = self.bot.dedup
        deadline = time.monotonic() + self.timeout
        # claim() has just found the lease alive; look again a few times while it may run out.
        next_try = time.monotonic() + dedup.lease / 4
        while time.monotonic() < deadline:
            outcome = await dedup.outcome(inbound.dedup_key)
            if outcome is None or outcome[0] == "deferred":
                return None, "duplicate"
            if outcome[0] in ("replied", "failed"):
                return from_json(outcome[1]), "duplicate"
            if time.monotonic() >= next_try:
                if await dedup.take_over(inbound.dedup_key):
                    # Within what is left of WeChat's wait; slower, the reply is deferred.
                    return await self._run(inbound, max(deadline - time.monotonic(), 0.5))
                next_try = time.monotonic() + dedup.lease / 4
            await asyncio.sleep(POLL_INTERVAL)
        return None, "duplicate"
