"""Where the time goes, from a py-spy raw (collapsed-stack) profile of a memberbot server.

    .venv/bin/py-spy record --pid PID --duration 15 --rate 100 --threads --format raw -o b.txt
    .venv/bin/python bench/pyspy_summary.py b.txt

(bench/webhook.py --profile DIR records and summarises in one go.)

Prints, for the event-loop thread (the one that bounds throughput):
- how busy it was (samples not parked in epoll), and how busy each other thread was
  (aiosqlite runs every SQLite statement on a thread of its own);
- self time by component: each sample goes to the innermost frame that belongs to a known
  library or to memberbot, so generic stdlib helpers (copy, dataclasses, abc, ...) count for
  whoever called them;
- inclusive time of the steps of one message (they overlap: "ORM" time sits inside them).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

IDLE = ("EpollSelector.select", "PollSelector.select", "select.epoll.poll")

# (component, path prefixes) — first match wins, tested innermost frame first.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("ORM: tortoise + pypika (query building, row → model)", ("tortoise/", "pypika")),
    ("DB driver: aiosqlite (thread hand-off, on the loop)", ("aiosqlite/",)),
    ("DB driver: asyncpg", ("asyncpg/",)),
    ("DB driver: sqlite3", ("sqlite3/",)),
    ("crypto + signatures (AES, SHA1, base64)",
     ("cryptography/", "wechatpy/crypto", "wechatpy/utils", "hashlib", "hmac", "base64",
      "bot/security")),
    ("XML: parse callbacks, render replies", ("xmltodict", "xml/", "pyexpat", "wechatpy/")),
    ("templates (jinja2)", ("jinja2/", "markupsafe/", "bot/templates")),
    ("logging", ("logging/",)),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("JSON", ("json/",)),
    ("HTTP server (aiohttp, multidict, yarl)", ("aiohttp/", "multidict/", "yarl/", "http/")),
    ("memberbot code (bot/)", ("bot/",)),
    ("asyncio event loop (tasks, callbacks, sockets)", ("asyncio/", "selectors", "socket")),
]
TRANSPARENT = ("copy.py", "dataclasses", "<frozen abc>", "<string>", "typing", "enum.py",
               "functools", "contextlib", "weakref", "re/", "datetime", "uuid", "decimal",
               "inspect", "zoneinfo", "_weakrefset", "collections/", "threading", "queue.py")

# Steps of one 积分 message: (label, function names as py-spy prints them).
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("web handler receive_wechat (all but the _process task)", ("receive_wechat",)),
    ("channel.open: signature, AES decrypt, XML parse", ("WeChatChannel.open",)),
    ("channel.render: reply XML + AES encrypt", ("WeChatChannel.render",)),
    ("dedup claim: INSERT inbound_message", ("DatabaseDedup.claim",)),
    ("dedup finish: UPDATE inbound_message", ("DatabaseDedup.finish",)),
    ("member and dialog: follower JOIN member JOIN conversation",
     ("member_of", "member_with_conversation")),
    ("cs_quota.note_inbound: UPDATE follower", ("note_inbound",)),
    ("dialogs.load: SELECT conversation (SMS; Redis dialogs)", ("DialogStore.load",)),
    ("Dispatcher._process task (lookups + handler)", ("Dispatcher._process",)),
    ("router.dispatch → show_card (the handler)", ("Router.dispatch",)),
    ("  card: loyalty.card_summary (one statement)", ("card_summary",)),
    ("  card: render card.j2", ("Templates.render",)),
    ("metrics + log line in Dispatcher.feed", ("MetricWrapperBase.labels", "Histogram.observe",
                                               "Counter.inc", "Logger.info", "Logger._log")),
    ("ORM total (inclusive, all queries)", ("QuerySet._execute", "QuerySet._make_query",
                                           "QuerySet.__await__", "UpdateQuery.__await__",
                                           "ValuesQuery.__await__", "Model.create",
                                           "Model.save", "QuerySet.filter", "QuerySet.first",
                                           "QuerySet.get_or_none", "Model.get_or_none",
                                           "QuerySet.annotate", "QuerySet.values",
                                           "QuerySet.order_by", "QuerySet.update")),
    ("  of which SQL text generation (pypika get_sql)", ("QueryBuilder.get_parameterized_sql",
                                                         "QueryBuilder.get_sql")),
    ("  of which filter resolution (Q objects)", ("AwaitableQuery.resolve_filters",)),
    ("hand-written statements (bot/infra/sql.py), inclusive", ("fetch",)),
    ("DB round trips on the loop (execute_query/insert)", ("SqliteClient.execute_query",
                                                           "SqliteClient.execute_query_dict",
                                                           "SqliteClient.execute_insert",
                                                           "AsyncpgDBClient.execute_query",
                                                           "AsyncpgDBClient.execute_query_dict",
                                                           "AsyncpgDBClient.execute_insert")),
]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>.*?)(?::\d+)?\)$")


def _parse(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _split(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    return (match["func"], match["path"]) if match else (frame, "")


def _component(frames: list[str]) -> str:
    for frame in reversed(frames[1:]):
        func, path = _split(frame)
        if any(t in path for t in TRANSPARENT):
            continue
        for name, prefixes in COMPONENTS:
            if any(path.startswith(p) or f"/{p}" in path for p in prefixes):
                return name
        return f"other: {path.split('/')[0] or func}"
    return "other"


def summarize(text: str) -> str:
    stacks = _parse(text)
    threads: Counter[str] = Counter()
    for frames, n in stacks:
        threads[frames[0]] += n
    if not threads:
        return "(empty profile)"
    main = next((t for t in threads if "MainThread" in t), threads.most_common(1)[0][0])
    main_stacks = [(f, n) for f, n in stacks if f[0] == main]
    wall = threads[main]
    idle = sum(n for f, n in main_stacks if any(f[-1].startswith(i) for i in IDLE))
    busy = wall - idle
    out = [f"event-loop thread: {busy / wall:.0%} busy ({busy} of {wall} samples; "
           f"the rest parked in epoll, waiting)"]
    for thread, n in threads.most_common():
        if thread != main:
            name = thread.split(": ", 1)[-1]
            out.append(f"other thread {name}: {n / wall:.0%} of wall time")

    comp: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for frames, n in main_stacks:
        if any(frames[-1].startswith(i) for i in IDLE):
            continue
        comp[_component(frames)] += n
        funcs = {_split(f)[0] for f in frames}
        for label, names in STEPS:
            if funcs.intersection(names):
                steps[label] += n
    out.append("\nself time on the event loop, by component (% of its busy samples):")
    out += [f"  {n / busy:6.1%}  {name}" for name, n in comp.most_common(14)]
    out.append("\ninclusive time of each step (% of busy samples; steps overlap):")
    out += [f"  {steps[label] / busy:6.1%}  {label}" for label, _ in STEPS]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]).read_text()))
