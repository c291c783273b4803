"""Helpers of the funding tests: committee decisions appended straight to the log, the
log read back, and a naive reference of funding's answers (a walk of the log in order)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from nats.js import JetStreamContext

from services.funding.settings import FundingSettings
from shared.codec import event_from_dict
from shared.events import EventBase, envelope_id, with_recording
from shared.log import EventLog
from tests import factories
from tests.factories import Q1, Q2

QUARTIERS = f"{Q1},{Q2}"
SOURCES = "city,centre-social-nord"
PARIS = ZoneInfo("Europe/Paris")
ANSWER_TYPES = ("GrantAwarded", "GrantRefused")

T = TypeVar("T")


def funding_settings(nats_url: str, database_url: str, **overrides: Any) -> FundingSettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "funding_database_url": database_url,
        "quartiers": QUARTIERS,
        "sources": SOURCES,
    }
    values.update(overrides)
    return FundingSettings(**values)


def funding_env(nats_url: str, database_url: str) -> dict[str, str]:
    """The same settings for ``python -m services.funding``."""
    return {
        "FPH_NATS_URL": nats_url,
        "FPH_FUNDING_DATABASE_URL": database_url,
        "FPH_QUARTIERS": QUARTIERS,
        "FPH_SOURCES": SOURCES,
    }


# --- events written straight to the log ---------------------------------------------


def logged(doc: dict[str, Any], source: str = "city") -> EventBase:
    """A submission as its owning service would have appended it."""
    return with_recording(event_from_dict(doc), source=source, recorded_at=datetime.now(UTC))


def decision(
    amount: int,
    occurred_at: str = "2026-03-20T10:00:00+01:00",
    quartier: str = Q1,
    verdict: str = "approved",
    project: str | None = None,
) -> dict[str, Any]:
    """A CommitteeDecided as review logs it (approved with ``amount`` unless said)."""
    project = project or "p-" + uuid.uuid4().hex[:10]
    return factories.submission(
        "CommitteeDecided",
        aggregate_id=project,
        quartier=quartier,
        occurred_at=occurred_at,
        correlation_id=str(uuid.uuid4()),
        data={"decision": verdict, "amount_approved_cents": amount if verdict == "approved" else 0},
    )


def envelope_opened(
    amount: int, cap: int, year: int = 2026, quartier: str = Q1, occurred_at: str | None = None
) -> dict[str, Any]:
    return factories.submission(
        "EnvelopeOpened",
        aggregate_id=envelope_id(year, quartier),
        quartier=quartier,
        occurred_at=occurred_at or f"{year}-01-05T09:00:00+01:00",
        data={
            "year": year,
            "amount_cents": amount,
            "cap_per_project_cents": cap,
            "funders": [{"funder": "ville", "amount_cents": amount}],
        },
    )


async def append(js: JetStreamContext, docs: Iterable[dict[str, Any]]) -> list[int]:
    """Append events to the log in one pipelined burst; their seqs, in order."""
    results = await EventLog(js).append_many([(logged(d), None) for d in docs])
    seqs = []
    for r in results:
        assert not isinstance(r, Exception), r
        seqs.append(r.seq)
    return seqs


# --- the log read back --------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    seq: int
    subject: str
    headers: dict[str, str]
    doc: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.doc["type"])


async def read_log(js: JetStreamContext, from_seq: int = 1) -> list[Logged]:
    out = []
    async for msg in EventLog(js).read(from_seq):
        out.append(
            Logged(
                msg.metadata.sequence.stream,
                msg.subject,
                dict(msg.headers or {}),
                json.loads(msg.data),
            )
        )
    return out


def answers_by_decision(log: list[Logged]) -> dict[str, list[Logged]]:
    """Every answer in the log, grouped by the decision that caused it."""
    out: dict[str, list[Logged]] = {}
    for m in log:
        if m.type in ANSWER_TYPES:
            out.setdefault(str(m.doc["causation_id"]), []).append(m)
    return out


def outcome(doc: dict[str, Any]) -> int | str:
    """An answer as its awarded amount, or its refusal reason."""
    if doc["type"] == "GrantAwarded":
        return int(doc["data"]["amount_cents"])
    return str(doc["data"]["reason"])


async def poll(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0) -> T:
    """Call ``check`` until it returns something (not None/False); fail clearly after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found is not None and found is not False:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def wait_answers(
    js: JetStreamContext, decision_ids: Iterable[str], timeout: float = 60.0, context: str = ""
) -> list[Logged]:
    """The log once every decision in ``decision_ids`` has an answer."""
    wanted = set(decision_ids)
    state: dict[str, Any] = {"have": 0}

    async def check() -> list[Logged] | None:
        log = await read_log(js)
        answered = wanted & set(answers_by_decision(log))
        state["have"] = len(answered)
        return log if len(answered) == len(wanted) else None

    try:
        return await poll(check, f"answers to {len(wanted)} decisions", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {state['have']} answered{context}") from None


# --- the reference: funding's rules, walked naively over the log --------------------


@dataclass
class RefEnvelope:
    cap: int
    credited: int = 0
    awarded: int = 0


@dataclass
class Reference:
    """Expected answer per approved decision (awarded cents or refusal reason), and the
    envelopes' balances as the log is walked (answers ignored: they are the output)."""

    tz: ZoneInfo = PARIS
    envelopes: dict[str, RefEnvelope] = field(default_factory=dict)
    grant_envelope: dict[str, str] = field(default_factory=dict)
    expected: dict[str, int | str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def walk(self, log: Iterable[Logged]) -> Reference:
        for m in log:
            self.step(m.doc)
        return self

    def step(self, doc: dict[str, Any]) -> None:
        t, data = doc["type"], doc["data"]
        env = self.envelopes.get(doc["aggregate_id"])
        if t == "EnvelopeOpened":
            self.envelopes[doc["aggregate_id"]] = RefEnvelope(
                data["cap_per_project_cents"], data["amount_cents"]
            )
        elif t == "EnvelopeToppedUp" and env:
            env.credited += data["amount_cents"]
        elif t == "GrantSettled" and env:
            env.credited += data["returned_cents"]
        elif t == "CommitteeDecided" and data["decision"] == "approved":
            local = datetime.fromisoformat(doc["occurred_at"]).astimezone(self.tz)
            target = self.envelopes.get(envelope_id(local.year, doc["quartier"]))
            amount = data["amount_approved_cents"]
            result: int | str
            if target is None:
                result = "no_envelope"
            elif amount > target.cap:
                result = "cap_exceeded"
            elif amount > target.credited - target.awarded:
                result = "envelope_exhausted"
            else:
                target.awarded += amount
                result = amount
            self.expected[str(doc["event_id"])] = result
            self.order.append(str(doc["event_id"]))


def check_never_overspent(log: list[Logged]) -> None:
    """At every point of the log, what an envelope awarded stays within what it was given."""
    credited: dict[str, int] = {}
    awarded: dict[str, int] = {}
    for m in log:
        env, data = m.doc["aggregate_id"], m.doc["data"]
        if m.type == "EnvelopeOpened":
            credited[env] = data["amount_cents"]
        elif m.type == "EnvelopeToppedUp":
            credited[env] += data["amount_cents"]
        elif m.type == "GrantSettled":
            credited[env] += data["returned_cents"]
        elif m.type == "GrantAwarded":
            awarded[env] = awarded.get(env, 0) + data["amount_cents"]
            assert awarded[env] <= credited.get(env, 0), (
                f"seq {m.seq}: {env} awarded {awarded[env]} cents of {credited.get(env, 0)}"
            )


def check_answers(log: list[Logged], decision_ids: list[str]) -> dict[str, int | str]:
    """Exactly one answer per approved decision, in decision order, as the reference says;
    the answers by decision id."""
    by_decision = answers_by_decision(log)
    twice = {d: [a.seq for a in s] for d, s in by_decision.items() if len(s) != 1}
    assert not twice, f"decisions answered more than once: {twice}"
    assert set(by_decision) == set(decision_ids), "answers to unknown decisions, or missing"
    ref = Reference().walk(log)
    got = {d: outcome(by_decision[d][0].doc) for d in decision_ids}
    differ = [(d, ref.expected[d], got[d]) for d in decision_ids if ref.expected[d] != got[d]]
    assert not differ, f"{len(differ)} answers differ from the reference, e.g. {differ[:5]}"
    # first decided, first served: the answers are in the decisions' order
    seq_of = {m.doc["event_id"]: m.seq for m in log}
    answer_seqs = [by_decision[d][0].seq for d in sorted(decision_ids, key=seq_of.__getitem__)]
    assert answer_seqs == sorted(answer_seqs), "answers not in the order of the decisions"
    check_never_overspent(log)
    return got


__all__ = ["Q1", "Q2"]
