"""`memberbot jobs list|run`: the scheduled jobs from a terminal.

`jobs run NAME` claims the job's period like any worker (bot/jobs/scheduler.py), so it never
runs beside a worker that is on it. A period that is done already runs again when asked, and
says so: every job is idempotent item by item (ledger, coupon and delivery keys), so the second
run finishes what may be missing and gives nobody anything twice.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
from typing import Any

from bot.cli.common import CliError
from bot.config import Config
from bot.jobs.scheduler import JOBS, STALE, Job, Scheduler
from bot.models import JobRun
from bot.runtime import open_bot


def register(commands: argparse._SubParsersAction) -> None:
    jobs = commands.add_parser("jobs", help="the scheduled jobs: list them, run one now")
    actions = jobs.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each job, its local time and its last run").set_defaults(
        run=_run_list, needs="database")
    run = actions.add_parser("run", help="run a job now, for a date (default: today)")
    run.add_argument("name", help=", ".join(job.name for job in JOBS))
    run.add_argument("--date", help="the day to run it for, YYYY-MM-DD in the shop's time zone")
    run.set_defaults(run=_run_run, needs="database")


def _run_list(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(list_jobs(config))


def _run_run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(run_job(config, args.name, args.date))


def _compact(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(", ", ": "))


def _local(at: dt.datetime, config: Config) -> str:
    return f"{at.astimezone(config.shop.tz):%Y-%m-%d %H:%M:%S}"


async def list_jobs(config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        for job in JOBS:
            at = f"{job.time(config):%H:%M}"
            last = await JobRun.filter(job=job.name).order_by("-started_at", "-id").first()
            if last is None:
                print(f"{job.name:<16} {at}  never run")
                continue
            state = last.status
            if last.status == "running":
                age = bot.now() - last.heartbeat_at
                state = (f"running on {last.worker}" if age < STALE
                         else f"stopped ({last.worker}, no heartbeat since "
                              f"{_local(last.heartbeat_at, config)})")
            result = f"  {_compact(last.result)}" if last.result is not None else ""
            print(f"{job.name:<16} {at}  {last.period} {state}{result}")


def _job(name: str) -> Job:
    for job in JOBS:
        if job.name == name:
            return job
    raise CliError(f"no job {name!r}; the jobs are: {', '.join(j.name for j in JOBS)}", 2)


async def run_job(config: Config, name: str, date: str | None) -> None:
    job = _job(name)
    try:
        day = dt.date.fromisoformat(date) if date else None
    except ValueError:
        raise CliError("--date takes a date like 2026-05-01", 2) from None
    async with open_bot(config, scheduler=False) as bot:
        if day and day > bot.today():
            # A job for a day to come would act on it now: next year's birthday gift today,
            # with a coupon that lapses before the birthday, and a "last run" in the future.
            raise CliError(f"--date {day} is after the shop's today ({bot.today()}): a job "
                           "runs for today or a day that has passed", 2)
        day = day or bot.today()
        what = f"{job.name} for {day}"
        before = await JobRun.get_or_none(job=job.name, period=day.isoformat())
        if before and before.status == "running" and bot.now() - before.heartbeat_at < STALE:
            raise CliError(f"{what} is running on {before.worker} right now; run it again "
                           "once that run is done")
        if before and before.status == "done":
            print(f"{what} was done already (by {before.worker} at "
                  f"{_local(before.finished_at, config)}); running it again: every item is "
                  "keyed, so nobody gets anything twice.")
        elif before:
            print(f"{what} was left unfinished by {before.worker}: taking it over.")
        worker = f"cli:{socket.gethostname()}:{os.getpid()}"[:64]
        scheduler = Scheduler(bot, jobs=(job,), worker=worker)
        if not await scheduler.run(job, day, again=True):
            row = await JobRun.get(job=job.name, period=day.isoformat())
            if row.worker != worker:
                raise CliError(f"{what} was just claimed by {row.worker}; it runs there")
            # This process will not retry: let any worker (or a second `jobs run`) take it
            # over now rather than after the heartbeat goes stale.
            await JobRun.filter(id=row.id, worker=worker, status="running").update(
                heartbeat_at=bot.now() - STALE)
            raise CliError(f"{what} failed (the log above says why); nothing it finished is "
                           "lost, and running it again completes it")
        row = await JobRun.get(job=job.name, period=day.isoformat())
        print(f"{what}: {row.status}")
        for key, value in (row.result or {}).items():
            print(f"  {key}: {_compact(value)}")
