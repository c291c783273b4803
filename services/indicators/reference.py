"""The reference computation of the fiche's indicators (CONTRACT 3): the oracle.

This module is written for clarity, not speed: it reads the whole log on every
call and follows the definitions of CONTRACT 3 word for word. The indicators
service (incremental projections) must give the same values; tests compare the
two. It does no I/O, never reads the clock and is deterministic.

Rules common to every indicator
-------------------------------

- **The log** is a sequence of ``(seq, event)`` pairs. It is read in log order,
  i.e. by increasing stream sequence (the pairs are sorted by ``seq``, stably,
  so an input already in order is read as given).
- **as_of_seq**: only pairs with ``seq <= as_of_seq`` exist (``None``: the whole
  log). Everything, including retractions and supersessions, is judged on that
  prefix only: the report as it stood then.
- **Idempotence**: an ``event_id`` seen twice is one event, the first occurrence
  in log order; later occurrences are ignored entirely (they are not counted,
  cannot become the "latest" of anything, and do not appear in a lineage).
- **Period**: ``start`` inclusive, ``end`` exclusive, compared with the *local*
  date (``tz``, Europe/Paris by default) of each event's ``occurred_at``.
- **Quartier**: the event's envelope ``quartier``; ``None`` means all quartiers.
  For ``GrantAwarded`` the project is ``data.project_id`` and the quartier the
  event's own. Envie, porteur and project ids are global (intake and review
  refuse an id already used in any quartier), so they are keyed by id alone.
- **Latest** means last in log order, whatever the ``occurred_at``.
- **Rounding**: decimal values are computed exactly (``fractions.Fraction``),
  rounded half-even with ``decimal.Decimal.quantize(..., ROUND_HALF_EVEN)`` and
  returned as ``float``; counts and cents are ``int``.

Interpretations where CONTRACT 3 leaves room
--------------------------------------------

- ``envies_recueillies``: an ``EnvieRecorded`` in the period and quartier counts
  unless an ``EnvieClosed`` with reason ``duplicate`` or ``entered_in_error``
  for the same envie exists anywhere in the visible log (any date, even after
  the period; but never after ``as_of_seq``). Other reasons (``withdrawn``,
  ``redirected``, ``out_of_scope``) do not retract.
- ``actions_abouties`` / ``participants`` / ``participants_moyen``: for each
  project, its *latest* ``ProjectCompleted`` (log order, up to ``as_of_seq``)
  decides both the outcome/participants **and** the period: the project counts
  in a period (and quartier) only if that latest completion's ``occurred_at``
  is in it. A superseding completion with another date therefore moves the
  project from one period to another; an earlier, superseded completion counts
  nowhere. ``participants_moyen`` divides by the number of those projects,
  whatever their outcome.
- ``impact_percu``: ``sum(level * n) / sum(n)`` over the ``scores`` of every
  ``ImpactAssessed`` in the period; ``None`` when there is no answer at all
  (no event, or only zero counts).
- ``delai_decision_jours``: each ``CommitteeDecided`` ``approved`` or
  ``rejected`` in the period; the project's latest ``ProjectSubmitted`` before
  it in log order (that submission may be outside the period); days =
  ``decision local date - submission local date``. A decision with no earlier
  submission in the visible log is skipped. The median is exact, then rounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any, Generic, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.events import (
    RETRACTING_REASONS,
    CommitteeDecided,
    Decision,
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    GrantAwarded,
    ImpactAssessed,
    Mechanism,
    MobilisationRecorded,
    Outcome,
    ProjectAccompanied,
    ProjectCompleted,
    ProjectSubmitted,
)

PARIS = ZoneInfo("Europe/Paris")

INDICATOR_CODES: tuple[str, ...] = (
    "envies_recueillies",
    "projets_accompagnes",
    "projets_developpes",
    "porteurs",
    "taux_transformation",
    "actions_abouties",
    "participants",
    "participants_moyen",
    "impact_percu",
    "mecanismes_mobilisation",
    "delai_decision_jours",
    "montant_attribue_cents",
)
"""The 12 indicator codes of CONTRACT 3, in the contract's order."""

Log = Sequence[tuple[int, EventBase]]
E = TypeVar("E", bound=EventBase)


# --- reading the log ------------------------------------------------------------


@dataclass(frozen=True)
class Logged(Generic[E]):
    """One event as it stands in the log: its stream sequence and the event."""

    seq: int
    event: E


def visible_events(log: Log, as_of_seq: int | None) -> list[Logged[EventBase]]:
    """The log as it stood at ``as_of_seq``, in log order, each ``event_id`` once.

    Pairs are sorted by ``seq`` (stable); pairs after ``as_of_seq`` are dropped;
    of several pairs with one ``event_id`` only the first in log order is kept.
    """
    seen_ids: set[UUID] = set()
    out: list[Logged[EventBase]] = []
    for seq, event in sorted(log, key=lambda pair: pair[0]):
        if as_of_seq is not None and seq > as_of_seq:
            continue
        if event.event_id in seen_ids:
            continue
        seen_ids.add(event.event_id)
        out.append(Logged(seq, event))
    return out


def of_type(events: Iterable[Logged[EventBase]], cls: type[E]) -> list[Logged[E]]:
    """The events of one type, in log order."""
    return [Logged(e.seq, e.event) for e in events if isinstance(e.event, cls)]


@dataclass(frozen=True)
class Scope:
    """Which events an indicator looks at: a quartier (or all) and a local-date period."""

    quartier: str | None
    start: date
    end: date
    tz: ZoneInfo = PARIS

    def local_date(self, event: EventBase) -> date:
        """The date of ``occurred_at`` on the local calendar."""
        return event.occurred_at.astimezone(self.tz).date()

    def covers(self, event: EventBase) -> bool:
        """In the quartier (or all quartiers) and in ``[start, end)`` by local date."""
        in_quartier = self.quartier is None or event.quartier == self.quartier
        return in_quartier and self.start <= self.local_date(event) < self.end

    def select(self, events: Iterable[Logged[EventBase]], cls: type[E]) -> list[Logged[E]]:
        """The events of one type in this scope, in log order."""
        return [e for e in of_type(events, cls) if self.covers(e.event)]


def retractions(events: Sequence[Logged[EventBase]]) -> dict[str, Logged[EnvieClosed]]:
    """Envie id -> the first ``EnvieClosed`` retracting it (``duplicate``/``entered_in_error``).

    Every visible close counts, whatever its date or quartier: retraction is a
    correction of the record, not a business fact of a period.
    """
    out: dict[str, Logged[EnvieClosed]] = {}
    for close in of_type(events, EnvieClosed):
        if close.event.data.reason in RETRACTING_REASONS:
            out.setdefault(close.event.aggregate_id, close)
    return out


def latest_completions(events: Sequence[Logged[EventBase]]) -> dict[str, Logged[ProjectCompleted]]:
    """Project id -> its latest ``ProjectCompleted`` in log order (any date, any quartier)."""
    out: dict[str, Logged[ProjectCompleted]] = {}
    for completion in of_type(events, ProjectCompleted):
        out[completion.event.aggregate_id] = completion  # a later one replaces it
    return out


@dataclass(frozen=True)
class Delay:
    """One decision of ``delai_decision_jours`` and the submission it is measured from."""

    decision: Logged[CommitteeDecided]
    submitted: Logged[ProjectSubmitted]
    days: int


def decision_delays(events: Sequence[Logged[EventBase]], scope: Scope) -> list[Delay]:
    """Every approved/rejected decision in scope with its project's latest prior submission.

    Walks the log in order, remembering each project's latest ``ProjectSubmitted``
    so far; decisions without one are skipped.
    """
    latest_submission: dict[str, Logged[ProjectSubmitted]] = {}
    out: list[Delay] = []
    for logged in events:
        event = logged.event
        if isinstance(event, ProjectSubmitted):
            latest_submission[event.aggregate_id] = Logged(logged.seq, event)
        elif isinstance(event, CommitteeDecided):
            if event.data.decision not in (Decision.approved, Decision.rejected):
                continue
            if not scope.covers(event):
                continue
            submitted = latest_submission.get(event.aggregate_id)
            if submitted is None:
                continue
            days = (scope.local_date(event) - scope.local_date(submitted.event)).days
            out.append(Delay(Logged(logged.seq, event), submitted, days))
    return out


# --- arithmetic -------------------------------------------------------------------


def round_half_even(value: Fraction, places: int) -> float:
    """``value`` rounded half-even to ``places`` decimals, as a float.

    The division is done in a 100-digit decimal context: a tie (exactly ``…5``
    after the last kept digit) is a terminating decimal, which such a context
    computes exactly; a non-terminating quotient is never a tie and 100 digits
    leave no doubt about its rounding direction.
    """
    with localcontext() as ctx:
        ctx.prec = 100
        quotient = Decimal(value.numerator) / Decimal(value.denominator)
        return float(quotient.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def median(values: Sequence[int]) -> Fraction:
    """The exact median: the middle value, or the mean of the two middle values."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return Fraction(ordered[middle])
    return Fraction(ordered[middle - 1] + ordered[middle], 2)


def score_sum(event: ImpactAssessed) -> int:
    """Sum of the levels of every answer: ``sum(level * n)``."""
    return sum(int(level) * n for level, n in event.data.scores.items())


def answer_count(event: ImpactAssessed) -> int:
    """Number of answers: ``sum(n)``."""
    return sum(event.data.scores.values())


# --- the indicators -------------------------------------------------------------


def compute(
    log: Log,
    *,
    quartier: str | None,
    start: date,
    end: date,
    as_of_seq: int | None,
    tz: ZoneInfo = PARIS,
) -> dict[str, Any]:
    """The 12 indicators of CONTRACT 3 for a quartier (or all) over ``[start, end)``.

    Returns ``{code: value}`` for every code of ``INDICATOR_CODES``: ``int`` for
    counts and cents, ``float`` (rounded half-even) or ``None`` for
    ``taux_transformation`` (4 decimals), ``participants_moyen`` and
    ``impact_percu`` (2 decimals) and ``delai_decision_jours`` (1 decimal), and
    for ``mecanismes_mobilisation`` a dict of all 9 mechanisms -> count.
    See the module docstring for the rules and interpretations.
    """
    events = visible_events(log, as_of_seq)
    scope = Scope(quartier, start, end, tz)

    # envies_recueillies: recorded in scope, less the retracted ones.
    retracted = retractions(events)
    envies = [
        e for e in scope.select(events, EnvieRecorded) if e.event.aggregate_id not in retracted
    ]
    envies_recueillies = len(envies)

    # projets_accompagnes, porteurs: over ProjectAccompanied in scope.
    accompanied = scope.select(events, ProjectAccompanied)
    projets_accompagnes = len({e.event.aggregate_id for e in accompanied})
    porteurs = len({p for e in accompanied for p in e.event.data.porteur_ids})

    # projets_developpes, montant_attribue_cents: over GrantAwarded in scope.
    awards = scope.select(events, GrantAwarded)
    projets_developpes = len({e.event.data.project_id for e in awards})
    montant_attribue_cents = sum(e.event.data.amount_cents for e in awards)

    taux_transformation = (
        None
        if envies_recueillies == 0
        else round_half_even(Fraction(projets_developpes, envies_recueillies), 4)
    )

    # actions_abouties, participants, participants_moyen: latest completions in scope.
    completed = [c for c in latest_completions(events).values() if scope.covers(c.event)]
    actions_abouties = sum(1 for c in completed if c.event.data.outcome is Outcome.achieved)
    participants = sum(c.event.data.participants for c in completed)
    participants_moyen = (
        None if not completed else round_half_even(Fraction(participants, len(completed)), 2)
    )

    # impact_percu: every answer of every ImpactAssessed in scope.
    assessments = scope.select(events, ImpactAssessed)
    answers = sum(answer_count(e.event) for e in assessments)
    scores = sum(score_sum(e.event) for e in assessments)
    impact_percu = None if answers == 0 else round_half_even(Fraction(scores, answers), 2)

    # mecanismes_mobilisation: every mechanism, 0 included.
    mecanismes: dict[str, int] = {m.value: 0 for m in Mechanism}
    for e in scope.select(events, MobilisationRecorded):
        for mechanism in e.event.data.mechanisms:
            mecanismes[mechanism.value] += 1

    # delai_decision_jours: median of the decisions' delays.
    delays = [d.days for d in decision_delays(events, scope)]
    delai = None if not delays else round_half_even(median(delays), 1)

    return {
        "envies_recueillies": envies_recueillies,
        "projets_accompagnes": projets_accompagnes,
        "projets_developpes": projets_developpes,
        "porteurs": porteurs,
        "taux_transformation": taux_transformation,
        "actions_abouties": actions_abouties,
        "participants": participants,
        "participants_moyen": participants_moyen,
        "impact_percu": impact_percu,
        "mecanismes_mobilisation": mecanismes,
        "delai_decision_jours": delai,
        "montant_attribue_cents": montant_attribue_cents,
    }


# --- lineage --------------------------------------------------------------------

COUNTED, RETRACTED, SUPERSEDED = "counted", "retracted", "superseded"
NUMERATOR, DENOMINATOR = "numerator", "denominator"


def _ref(logged: Logged[Any], scope: Scope) -> dict[str, Any]:
    """A short reference to another event (the one that retracts, supersedes, …)."""
    event: EventBase = logged.event
    return {
        "event_id": str(event.event_id),
        "seq": logged.seq,
        "occurred_at": event.occurred_at.isoformat(),
        "local_date": scope.local_date(event).isoformat(),
    }


def _entry(
    logged: Logged[Any],
    scope: Scope,
    contribution: Any,
    status: str = COUNTED,
    **extra: Any,
) -> dict[str, Any]:
    event: EventBase = logged.event
    return {
        "event_id": str(event.event_id),
        "seq": logged.seq,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "local_date": scope.local_date(event).isoformat(),
        "quartier": event.quartier,
        "contribution": contribution,
        "status": status,
        **extra,
    }


def _distinct(items: Sequence[tuple[Logged[Any], list[str]]], scope: Scope) -> list[dict[str, Any]]:
    """Entries for a distinct count: each event names ``keys``; it contributes the
    number of those keys not named by an earlier event (log order)."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for logged, keys in items:
        new = [k for k in dict.fromkeys(keys) if k not in seen]
        seen.update(new)
        out.append(_entry(logged, scope, len(new), keys=list(keys)))
    return out


def _envies(events: Sequence[Logged[EventBase]], scope: Scope) -> list[dict[str, Any]]:
    retracted = retractions(events)
    out = []
    for e in scope.select(events, EnvieRecorded):
        close = retracted.get(e.event.aggregate_id)
        if close is None:
            out.append(_entry(e, scope, 1))
        else:
            by = {**_ref(close, scope), "reason": close.event.data.reason.value}
            out.append(_entry(e, scope, 1, RETRACTED, retracted_by=by))
    return out


def _accompanied(events: Sequence[Logged[EventBase]], scope: Scope) -> list[dict[str, Any]]:
    items = [(e, [e.event.aggregate_id]) for e in scope.select(events, ProjectAccompanied)]
    return _distinct(items, scope)


def _developed(events: Sequence[Logged[EventBase]], scope: Scope) -> list[dict[str, Any]]:
    items = [(e, [e.event.data.project_id]) for e in scope.select(events, GrantAwarded)]
    return _distinct(items, scope)


def _porteurs(events: Sequence[Logged[EventBase]], scope: Scope) -> list[dict[str, Any]]:
    items = [(e, list(e.event.data.porteur_ids)) for e in scope.select(events, ProjectAccompanied)]
    return _distinct(items, scope)


def _completions(
    events: Sequence[Logged[EventBase]],
    scope: Scope,
    contribution: Callable[[ProjectCompleted], int],
) -> list[dict[str, Any]]:
    """Every ``ProjectCompleted`` in scope: the project's latest is counted, an earlier
    one is superseded (with a reference to the latest, possibly in another period)."""
    latest = latest_completions(events)
    out = []
    for c in scope.select(events, ProjectCompleted):
        project_id = c.event.aggregate_id
        winner = latest[project_id]
        extra = {"project_id": project_id, "outcome": c.event.data.outcome.value}
        if winner.seq == c.seq:
            out.append(_entry(c, scope, contribution(c.event), **extra))
        else:
            by = _ref(winner, scope)
            out.append(
                _entry(c, scope, contribution(c.event), SUPERSEDED, superseded_by=by, **extra)
            )
    return out


def _achieved(event: ProjectCompleted) -> int:
    return 1 if event.data.outcome is Outcome.achieved else 0


def _participants(event: ProjectCompleted) -> int:
    return event.data.participants


def _one(event: ProjectCompleted) -> int:
    return 1


def _with_role(entries: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    return [{**entry, "role": role} for entry in entries]


def _by_log_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by seq; for one event, its numerator entry before its denominator entry."""
    return sorted(entries, key=lambda e: (e["seq"], e.get("role") == DENOMINATOR))


def lineage(
    log: Log,
    code: str,
    *,
    quartier: str | None,
    start: date,
    end: date,
    as_of_seq: int | None,
    tz: ZoneInfo = PARIS,
) -> list[dict[str, Any]]:
    """Every event that contributes to indicator ``code``, in log order.

    Same parameters and rules as ``compute``. Each entry is::

        {"event_id": str, "seq": int, "type": str,
         "occurred_at": str (isoformat, the event's own offset),
         "local_date": str (YYYY-MM-DD on the tz calendar, what the period is judged on),
         "quartier": str,
         "contribution": what it adds (see below),
         "status": "counted" | "retracted" | "superseded",
         ...per-code keys}

    Only ``counted`` entries make the value; ``retracted`` and ``superseded``
    entries carry the contribution they *would* have made, and a reference
    (``retracted_by`` / ``superseded_by``: ``event_id, seq, occurred_at,
    local_date``, plus ``reason`` for a retraction). Per code:

    - ``envies_recueillies``: each ``EnvieRecorded`` in scope, contribution 1;
      ``retracted`` when closed as duplicate/entered_in_error (``retracted_by``).
    - ``projets_accompagnes``, ``projets_developpes``, ``porteurs``: each
      ``ProjectAccompanied`` (resp. ``GrantAwarded``) in scope, with ``keys``
      (the project id(s) or porteur ids it names) and as contribution the
      number of those keys not named by an earlier entry; value = sum.
    - ``montant_attribue_cents``: each ``GrantAwarded``, contribution its cents.
    - ``actions_abouties`` / ``participants``: each ``ProjectCompleted`` in
      scope, with ``project_id`` and ``outcome``; contribution 1 if achieved
      else 0 / its participants; the project's latest is ``counted``, an
      earlier one ``superseded`` (``superseded_by`` may point outside the
      period: the project then counts in the superseding completion's period).
    - ``mecanismes_mobilisation``: each ``MobilisationRecorded``, contribution
      ``{mechanism: 1}`` for each mechanism it names; value = per-key sum.
    - ``delai_decision_jours``: each counted decision, contribution its days,
      with ``submitted`` (a reference to the ``ProjectSubmitted`` it is measured
      from, which may be outside the period); value = median.
    - Ratios and means carry ``"role": "numerator" | "denominator"``; one event
      may appear once in each role; value = sum(numerator) / sum(denominator)
      over counted entries:
      ``taux_transformation``: the ``projets_developpes`` entries (numerator)
      and the ``envies_recueillies`` entries (denominator);
      ``participants_moyen``: the ``participants`` entries (numerator) and
      the same completions with contribution 1 (denominator);
      ``impact_percu``: each ``ImpactAssessed``, numerator ``sum(level * n)``,
      denominator ``sum(n)``, both with its ``scores``.

    An unknown ``code`` raises ``ValueError``.
    """
    if code not in INDICATOR_CODES:
        raise ValueError(f"unknown indicator {code!r}; known: {', '.join(INDICATOR_CODES)}")
    events = visible_events(log, as_of_seq)
    scope = Scope(quartier, start, end, tz)

    if code == "envies_recueillies":
        return _envies(events, scope)
    if code == "projets_accompagnes":
        return _accompanied(events, scope)
    if code == "projets_developpes":
        return _developed(events, scope)
    if code == "porteurs":
        return _porteurs(events, scope)
    if code == "taux_transformation":
        return _by_log_order(
            _with_role(_developed(events, scope), NUMERATOR)
            + _with_role(_envies(events, scope), DENOMINATOR)
        )
    if code == "actions_abouties":
        return _completions(events, scope, _achieved)
    if code == "participants":
        return _completions(events, scope, _participants)
    if code == "participants_moyen":
        return _by_log_order(
            _with_role(_completions(events, scope, _participants), NUMERATOR)
            + _with_role(_completions(events, scope, _one), DENOMINATOR)
        )
    if code == "impact_percu":
        out = []
        for e in scope.select(events, ImpactAssessed):
            scores = dict(e.event.data.scores)
            out.append(_entry(e, scope, score_sum(e.event), role=NUMERATOR, scores=scores))
            out.append(_entry(e, scope, answer_count(e.event), role=DENOMINATOR, scores=scores))
        return out
    if code == "mecanismes_mobilisation":
        return [
            _entry(e, scope, {m.value: 1 for m in e.event.data.mechanisms})
            for e in scope.select(events, MobilisationRecorded)
        ]
    if code == "delai_decision_jours":
        return [
            _entry(d.decision, scope, d.days, submitted=_ref(d.submitted, scope))
            for d in decision_delays(events, scope)
        ]
    # montant_attribue_cents, the last code
    return [_entry(e, scope, e.event.data.amount_cents) for e in scope.select(events, GrantAwarded)]
