"""Run the intake service with phase timers: ``python -m bench.phased_intake OUT [intake args]``.

Wraps (in this process only, nothing is changed on disk) the steps of
``shared.inbox.InboxProcessor`` and the follower, counts SQL statements and
sessions, and writes a JSON summary to OUT when stopped with SIGTERM. Wall
times of awaited steps include waiting for NATS; sync steps are pure CPU of
the event loop.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from collections import defaultdict
from typing import Any

STATS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
BATCH_SIZES: list[int] = []


def _record(key: str, started: float) -> None:
    s = STATS[key]
    s[0] += 1
    s[1] += time.perf_counter() - started


def wrap_async(owner: Any, name: str, key: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            _record(key, started)

    setattr(owner, name, wrapper)


def wrap_sync(owner: Any, name: str, key: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _record(key, started)

    setattr(owner, name, wrapper)


def install() -> None:
    import sqlalchemy as sa
    from nats.js.client import JetStreamContext
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    import shared.inbox as inbox
    from shared.follower import Follower
    from shared.log import EventLog

    P = inbox.InboxProcessor
    original_process = P.process

    async def process(self: Any, msgs: Any, lease: Any = None) -> Any:
        BATCH_SIZES.append(len(msgs))
        started = time.perf_counter()
        try:
            return await original_process(self, msgs, lease)
        finally:
            _record("inbox.process (whole batch)", started)

    P.process = process  # type: ignore[method-assign]
    wrap_async(P, "_mark_already_answered", "inbox._mark_already_answered")
    wrap_sync(P, "_decide_stateless", "inbox._decide_stateless (parse+contract)")
    wrap_sync(inbox._Batch, "_load", "batch._load (index, subject seqs, state: 3 queries)")
    wrap_sync(inbox._Batch, "decide", "batch.decide (idempotency+rules, in memory)")
    wrap_async(inbox._Batch, "flush", "batch.flush (appends+apply+commit)")
    wrap_async(EventLog, "append_many", "  log.append_many (publish, await acks)")
    wrap_async(P, "_answer", "inbox._answer (receipts, await acks)")
    for name in ("get_inbox_progress", "set_inbox_progress", "get_subject_seqs"):
        wrap_sync(inbox, name, f"  store.{name}")
    wrap_sync(Follower, "_apply_batch", "follower._apply_batch (re-reads own appends)")
    wrap_async(JetStreamContext.PullSubscription, "fetch", "pull fetch (incl. idle waits)")

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_t"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        kind = statement.split(None, 1)[0].upper()
        _record(f"sql {kind} (cursor.execute only)", conn.info.pop("bench_t"))

    sa.event.listen(Engine, "before_cursor_execute", before)
    sa.event.listen(Engine, "after_cursor_execute", after)
    original_init = Session.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        STATS["sessions opened"][0] += 1
        original_init(self, *args, **kwargs)

    Session.__init__ = counting_init  # type: ignore[method-assign]


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    install()
    from services.intake.__main__ import main as intake_main

    cpu0 = time.process_time()
    try:
        intake_main(argv)
    except SystemExit:
        pass
    finally:
        with open(out, "w") as f:
            json.dump(
                {
                    "stats": {k: v for k, v in STATS.items()},
                    "batch_sizes": BATCH_SIZES,
                    "process_cpu_seconds": time.process_time() - cpu0,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
