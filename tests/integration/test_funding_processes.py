"""Funding as real processes (``python -m services.funding``): two instances, a burst of
approved decisions against one small envelope, and a kill -9 in the middle of it.

Whatever the number of instances and the crashes, every approved decision gets exactly
one answer, the envelope is never overspent, and the answers are those of a naive walk
of the log (CONTRACT 1.3: first decided, first served).
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from services.funding import domain
from shared import nats_server
from shared.lease import LEASES_BUCKET
from shared.log import provision
from shared.subjects import EVENTS_STREAM
from tests import factories
from tests.conftest import NatsServer
from tests.integration.funding_fixtures import (
    Q1,
    Q2,
    Logged,
    Reference,
    answers_by_decision,
    append,
    check_answers,
    decision,
    envelope_opened,
    funding_env,
    outcome,
    wait_answers,
)
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.anyio

ENVELOPE = f"FPH-2026-{Q1}"
OPENING, CAP = 1_000_000, 30_000
TOP_UP, RETURNED = 100_000, 10_000
N = 200
TIMEOUT = 120.0
ANSWERS_LEASE = "funding-answers-v1"


# --- the burst -------------------------------------------------------------------------


def burst(seed: int = 1) -> list[dict[str, Any]]:
    """N approved decisions: most within the cap, some exactly at it or a cent above, some
    far above, a few in a quartier without envelope; small ones to use up what is left."""
    rng = random.Random(seed)
    amounts = [1_000, 2_500, 7_777, 12_345, 20_000, 29_999, 30_000, 30_001, 45_000]
    docs = [decision(20_000)]  # the first is awarded: its grant is paid and settled midway
    for i in range(1, N):
        quartier = Q2 if i % 37 == 0 else Q1
        docs.append(decision(rng.choice(amounts), quartier=quartier))
    return docs


@pytest.fixture
def databases(new_database: Callable[[str], str]) -> Callable[[str], str]:
    return new_database


@pytest.fixture
def procs() -> Iterator[list[ServiceProcess]]:
    """Every funding process a test starts, stopped at its end (before databases go)."""
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.stop()


def funding(
    nats_url: str, database_url: str, tmp_path: Path, label: str, procs: list[ServiceProcess]
) -> ServiceProcess:
    proc = ServiceProcess("funding", funding_env(nats_url, database_url), tmp_path / f"{label}.log")
    procs.append(proc)
    return proc


def logs(procs: list[ServiceProcess]) -> str:
    return "".join(f"\n----- {p.log_path.name} -----\n{p.log()}" for p in procs)


async def poll(
    check: Callable[[], Any], what: str, procs: list[ServiceProcess], timeout: float = TIMEOUT
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s{logs(procs)}")
        await asyncio.sleep(0.1)


async def desk(proc: ServiceProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=proc.url, timeout=30) as http:
        r = await http.post(path, json=body)
    assert r.status_code == 201, f"{path}: {r.status_code} {r.text}"
    result: dict[str, Any] = r.json()
    return result


async def ledger(proc: ServiceProcess) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=proc.url, timeout=30) as http:
        r = await http.get(f"/envelopes/{ENVELOPE}")
    return r.json() if r.status_code == 200 else None


async def run_burst(
    js: JetStreamContext,
    procs: list[ServiceProcess],
    docs: list[dict[str, Any]],
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[Logged]:
    """Open the envelope through one instance's desk and append the first half of the
    burst; once it is answered (``between`` then runs), pay and settle the first grant and
    top the envelope up through another instance's desk, and append the second half.
    The log once every decision is answered.

    The desk writes while no answer is being appended: during a burst of answers on the
    same envelope a desk submission can be refused ``busy`` (reported separately)."""
    await desk(
        procs[0],
        "/envelopes",
        {
            "quartier": Q1,
            "year": 2026,
            "amount_cents": OPENING,
            "cap_per_project_cents": CAP,
            "funders": [{"funder": "Ville", "amount_cents": OPENING}],
            "occurred_at": "2026-01-05T09:00:00+01:00",
        },
    )
    half = len(docs) // 2
    await append(js, docs[:half])
    ids = [d["event_id"] for d in docs]
    await wait_answers(js, ids[:half], timeout=TIMEOUT, context=logs(procs))
    if between is not None:
        await between()
    grant = domain.grant_id_for(docs[0]["event_id"])

    async def granted_everywhere() -> bool:
        for proc in procs:
            book = await ledger(proc)
            if book is None or grant not in {m["grant_id"] for m in book["movements"]}:
                return False
        return True

    await poll(granted_everywhere, f"grant {grant} in every instance's ledger", procs)
    other = procs[-1]
    path = f"/envelopes/{ENVELOPE}"
    await desk(other, f"{path}/payments", {"grant_id": grant, "amount_cents": 20_000})
    await desk(other, f"{path}/top-ups", {"amount_cents": TOP_UP, "funder": "Etat"})
    await desk(
        other,
        f"{path}/settlements",
        {"grant_id": grant, "spent_cents": 20_000 - RETURNED, "returned_cents": RETURNED},
    )
    await append(js, docs[half:])
    return await wait_answers(js, ids, timeout=TIMEOUT, context=logs(procs))


async def answering(js: JetStreamContext, procs: list[ServiceProcess]) -> ServiceProcess | None:
    """The instance holding the answers' lease (its holder id carries its pid)."""
    kv = await js.key_value(LEASES_BUCKET)
    try:
        holder = (await kv.get(ANSWERS_LEASE)).value or b""
    except KeyNotFoundError:
        return None
    for proc in procs:
        if (
            proc.proc is not None
            and proc.proc.poll() is None
            and f"-{proc.proc.pid}-" in holder.decode()
        ):
            return proc
    return None


def figures(log: list[Logged], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the run decided: awards and refusals by reason, and the envelope's figures."""
    answers = answers_by_decision(log)
    results = [outcome(answers[d["event_id"]][0].doc) for d in docs]
    awards = [r for r in results if isinstance(r, int)]
    refusals = Counter(r for r in results if isinstance(r, str))
    return {
        "decisions": len(docs),
        "awarded": len(awards),
        "awarded_cents": sum(awards),
        "refused": dict(sorted(refusals.items())),
        "credited_cents": OPENING + TOP_UP + RETURNED,
        "remaining_cents": OPENING + TOP_UP + RETURNED - sum(awards),
    }


async def check_ledgers(procs: list[ServiceProcess], expected: dict[str, Any]) -> None:
    """Every instance's ledger ends with the same figures, those of the log."""
    want = {
        "opened_cents": OPENING,
        "topped_up_cents": TOP_UP,
        "returned_cents": RETURNED,
        "paid_cents": 20_000,
        "awarded_cents": expected["awarded_cents"],
        "remaining_cents": expected["remaining_cents"],
    }
    for proc in procs:

        async def agrees(proc: ServiceProcess = proc) -> bool:
            book = await ledger(proc)
            return book is not None and {k: book[k] for k in want} == want

        await poll(agrees, f"{proc.log_path.name}'s ledger at {want}", procs)


def answered_by(proc: ServiceProcess) -> int:
    """How many answers this process appended (its log lines)."""
    return len(re.findall(r"decision seq \d+ .*: Grant\w+ at seq \d+\n", proc.log_path.read_text()))


# --- two instances, and one --------------------------------------------------------------


@asynccontextmanager
async def fresh_server(tmp_path: Path) -> AsyncIterator[tuple[str, JetStreamContext]]:
    """Another nats-server with the contract's streams, for a second run from scratch."""
    port = nats_server.free_port()
    server = nats_server.start(tmp_path / "nats-2", port, log_file=tmp_path / "nats-2.log")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        assert await provision(js) == []
        yield url, js
    finally:
        await nc.drain()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


async def test_two_instances_answer_a_burst_as_one_does(
    nats_srv: NatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    databases: Callable[[str], str],
    database_url: str,
    procs: list[ServiceProcess],
):
    docs = burst()
    ids = [d["event_id"] for d in docs]
    a = funding(nats_srv.url, database_url, tmp_path, "funding-a", procs)
    b = funding(nats_srv.url, databases("funding_b"), tmp_path, "funding-b", procs)
    for proc in (a, b):
        proc.start(wait=False)
    for proc in (a, b):
        proc.wait_healthy()

    async def hand_over() -> None:
        """The instance that answered the first half stops (gracefully), the other takes
        the answers over, and the first comes back (standing by) for the second half."""
        first = await poll(lambda: answering(js, [a, b]), "an instance answering", procs)
        second = b if first is a else a
        first.stop()
        await poll(
            lambda: _is_answering(js, [a, b], second), f"{second.log_path.name} answering", procs
        )
        first.start()

    log = await run_burst(js, [a, b], docs, between=hand_over)
    two = check_answers(log, ids)
    result = figures(log, docs)
    assert result["awarded"] and result["refused"].keys() == {
        "cap_exceeded",
        "envelope_exhausted",
        "no_envelope",
    }, result
    # the top-up and the returned money were used by the second half
    ref = Reference().walk(log)
    assert ref.envelopes[ENVELOPE].credited == OPENING + TOP_UP + RETURNED
    assert any(isinstance(two[d], int) for d in ids[N // 2 :]), result
    await check_ledgers([a, b], result)
    by_a, by_b = answered_by(a), answered_by(b)
    assert by_a > 0 and by_b > 0 and by_a + by_b >= N, logs(procs)
    print(f"two instances: {result}; answers appended by a={by_a} b={by_b}")

    # the same decisions, on a fresh log, with one instance
    async with fresh_server(tmp_path) as (url, js2):
        solo = funding(url, databases("funding_solo"), tmp_path, "funding-solo", procs)
        solo.start()
        log2 = await run_burst(js2, [solo], docs)
        one = check_answers(log2, ids)
        differ = [(i, two[d], one[d]) for i, d in enumerate(ids) if two[d] != one[d]]
        assert not differ, f"one and two instances answered differently: {differ[:5]}"
        assert figures(log2, docs) == result
        solo.stop()


async def _is_answering(
    js: JetStreamContext, procs: list[ServiceProcess], proc: ServiceProcess
) -> bool:
    return await answering(js, procs) is proc


# --- kill -9 -----------------------------------------------------------------------------


async def answers_in_log(js: JetStreamContext, before: int) -> int:
    """Answers appended so far: everything logged after the ``before`` inputs."""
    return int((await js.stream_info(EVENTS_STREAM)).state.messages) - before


async def test_kill_9_while_answering_then_restart_answers_each_decision_once(
    nats_srv: NatsServer,
    js: JetStreamContext,
    tmp_path: Path,
    database_url: str,
    procs: list[ServiceProcess],
):
    docs = burst(seed=2)
    ids = [d["event_id"] for d in docs]
    proc = funding(nats_srv.url, database_url, tmp_path, "funding", procs).start()
    top_up = factories.submission(
        "EnvelopeToppedUp", aggregate_id=ENVELOPE, data={"amount_cents": TOP_UP, "funder": "Etat"}
    )
    inputs = [envelope_opened(OPENING, CAP), *docs[: N // 2], top_up, *docs[N // 2 :]]
    await append(js, inputs)
    await poll(
        lambda: _at_least(js, len(inputs), 60), "60 answers before the kill", procs, timeout=60
    )
    proc.kill()
    answered = await answers_in_log(js, len(inputs))
    assert answered < N, f"killed after all {N} answers: nothing proved{logs(procs)}"

    proc.start()
    log = await wait_answers(js, ids, timeout=TIMEOUT, context=logs(procs))
    got = check_answers(log, ids)  # once each, as the reference walk of the log says
    assert len(log) == len(inputs) + N, "an answer was appended twice"
    awards = [v for v in got.values() if isinstance(v, int)]
    assert sum(awards) <= OPENING + TOP_UP
    book = await poll(lambda: ledger(proc), "the ledger after the restart", procs)
    assert book["awarded_cents"] == sum(awards), book
    print(f"kill -9 after {answered} of {N} answers; {len(awards)} awards, {sum(awards)} cents")


async def _at_least(js: JetStreamContext, inputs: int, n: int) -> bool:
    return await answers_in_log(js, inputs) >= n


async def test_kill_9_of_the_answering_instance_the_other_takes_over(
    nats_srv: NatsServer, js: JetStreamContext, tmp_path: Path, procs: list[ServiceProcess]
):
    """Two instances (SQLite only: the database kind is covered above), the one answering
    killed in the middle of the burst: the other takes over after the lease's TTL."""
    docs = burst(seed=3)
    ids = [d["event_id"] for d in docs]
    a = funding(nats_srv.url, f"sqlite:///{tmp_path / 'a.db'}", tmp_path, "funding-a", procs)
    b = funding(nats_srv.url, f"sqlite:///{tmp_path / 'b.db'}", tmp_path, "funding-b", procs)
    for proc in (a, b):
        proc.start(wait=False)
    for proc in (a, b):
        proc.wait_healthy()
    inputs = [envelope_opened(OPENING, CAP), *docs]
    await append(js, inputs)
    await poll(lambda: _at_least(js, len(inputs), 40), "40 answers", procs, timeout=60)
    victim = await poll(lambda: answering(js, [a, b]), "an instance answering", procs)
    victim.kill()
    answered = await answers_in_log(js, len(inputs))
    assert answered < N, f"killed after all {N} answers: nothing proved{logs(procs)}"

    log = await wait_answers(js, ids, timeout=TIMEOUT, context=logs(procs))
    check_answers(log, ids)
    assert len(log) == len(inputs) + N, "an answer was appended twice"
    survivor = b if victim is a else a
    assert answered_by(survivor) > 0, logs(procs)
    print(f"kill -9 of the answering instance after {answered} of {N} answers")
