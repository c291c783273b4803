"""The indicators store: one row per contribution, so that any period, any quartier and
any past ``as_of_seq`` is answered with a few SQL aggregates (no replay per request).

Every row keeps the log sequence of the event behind it; a query "as of" sequence S
reads the rows with ``seq <= S``. A retraction keeps the sequence that retracted the
envie (``retracted_seq``), and the latest completion of a project is found as of S.
Every event body is kept too (``ind_events``) for the lineage, and the digest chain
of CONTRACT 4 has one row per sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.indicators.reference import median, round_half_even
from shared.codec import parse_logged
from shared.events import (
    RETRACTING_REASONS,
    CommitteeDecided,
    Decision,
    EnvelopeOpened,
    EnvelopeToppedUp,
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    GrantAwarded,
    GrantSettled,
    ImpactAssessed,
    Mechanism,
    MobilisationRecorded,
    ProjectAccompanied,
    ProjectCompleted,
    ProjectSubmitted,
)
from shared.log import EMPTY_DIGEST, DigestChain
from shared.store import insert_rows, metadata

log = logging.getLogger(__name__)

FOLLOWED = frozenset(
    {
        "EnvieRecorded",
        "EnvieClosed",
        "ProjectAccompanied",
        "ProjectSubmitted",
        "CommitteeDecided",
        "GrantAwarded",
        "ProjectCompleted",
        "ImpactAssessed",
        "MobilisationRecorded",
        "EnvelopeOpened",
        "EnvelopeToppedUp",
        "GrantSettled",
    }
)


def _facts(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("quartier", sa.String(128), nullable=False, index=True),
        sa.Column("local_date", sa.Date, nullable=False, index=True),
        *columns,
    )


envies = _facts(
    "ind_envies",
    sa.Column("envie_id", sa.String(128), nullable=False, index=True),
    sa.Column("retracted_seq", sa.BigInteger),
)
accompaniments = _facts("ind_accompaniments", sa.Column("project_id", sa.String(128)))
porteurs = sa.Table(
    "ind_porteurs",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("porteur_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("local_date", sa.Date, nullable=False, index=True),
)
grants = _facts(
    "ind_grants",
    sa.Column("project_id", sa.String(128), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
)
completions = _facts(
    "ind_completions",
    sa.Column("project_id", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("participants", sa.BigInteger, nullable=False),
)
impacts = _facts(
    "ind_impacts",
    sa.Column("score_sum", sa.BigInteger, nullable=False),
    sa.Column("answers", sa.BigInteger, nullable=False),
)
mobilisations = sa.Table(
    "ind_mobilisations",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("mechanism", sa.String(32), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("local_date", sa.Date, nullable=False, index=True),
)
decisions = _facts("ind_decisions", sa.Column("days", sa.Integer, nullable=False))
submitted = sa.Table(
    "ind_last_submission",
    metadata,
    sa.Column("project_id", sa.String(128), primary_key=True),
    sa.Column("local_date", sa.Date, nullable=False),
)
events = sa.Table(
    "ind_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("quartier", sa.String(128), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
)
envelopes = sa.Table(
    "ind_envelopes",
    metadata,
    sa.Column("envelope_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("credited_cents", sa.BigInteger, nullable=False),
    sa.Column("awarded_cents", sa.BigInteger, nullable=False),
    sa.Column("returned_cents", sa.BigInteger, nullable=False),
)
"""Each envelope's ledger as the log has it, for ``/metrics`` (what remains to award)."""
digests = sa.Table(
    "ind_digests",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
)


STORE_VERSION = "2"
"""The projection's version: bump it when its tables or what it follows change. A store
written by another version is emptied and rebuilt from the log (it is only a cache)."""
store_meta = sa.Table(
    "ind_meta",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
)


def prepare(engine: Engine) -> bool:
    """Create the store's tables; empty a store of another projection version first (its
    follower then replays the log into it). True if it was emptied."""
    metadata.create_all(engine)
    with Session(engine) as session:
        found = session.scalar(sa.select(store_meta.c.value).where(store_meta.c.key == "version"))
        used = session.scalar(sa.select(sa.func.count()).select_from(digests))
    rebuilt = found != STORE_VERSION and (found is not None or bool(used))
    if rebuilt:
        log.warning(
            "the indicators store was written by projection version %s, this is %s:"
            " emptying it; it is rebuilt from the log",
            found or "1",
            STORE_VERSION,
        )
        metadata.drop_all(engine)
        metadata.create_all(engine)
    if found != STORE_VERSION:
        with Session(engine) as session, session.begin():
            session.execute(store_meta.delete())
            session.execute(store_meta.insert().values(key="version", value=STORE_VERSION))
    return rebuilt


class IndicatorsProjection:
    """Projects the log into the contribution rows (a ``shared.model.Projection``)."""

    followed_types = FOLLOWED
    tracks_subjects = False  # it never appends: no expected sequences to keep

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def local(self, event: EventBase) -> date:
        return event.occurred_at.astimezone(self.tz).date()

    def observe(self, session: Session, messages: Sequence[tuple[int, bytes]]) -> None:
        """Extend the digest chain with every message of the log, in order."""
        if not messages:
            return
        first = messages[0][0]
        previous = session.scalar(sa.select(digests.c.digest).where(digests.c.seq == first - 1))
        chain = DigestChain(bytes(previous) if previous is not None else EMPTY_DIGEST, first - 1)
        rows = []
        for seq, body in messages:
            chain.add(seq, body)
            rows.append({"seq": seq, "digest": chain.digest})
        insert_rows(session, digests, rows)

    def apply(self, session: Session, batch: Sequence[tuple[EventBase, int]]) -> None:
        """Apply a batch in log order with one bulk statement per table.

        Only two things depend on earlier events: a retraction updates its envie's row
        (run after the batch's inserts, in log order), and a decision's delay needs the
        project's latest submission before it (from the batch as it goes, else the table).
        """
        rows: dict[sa.Table, list[dict[str, Any]]] = {}

        def add(table: sa.Table, row: dict[str, Any]) -> None:
            rows.setdefault(table, []).append(row)

        retractions: list[dict[str, Any]] = []
        decided = [e.aggregate_id for e, _ in batch if isinstance(e, CommitteeDecided)]
        last_submitted: dict[str, date] = {}
        if decided:
            query = sa.select(submitted.c.project_id, submitted.c.local_date).where(
                submitted.c.project_id.in_(sorted(set(decided)))
            )
            last_submitted = {p: d for p, d in session.execute(query)}
        submitted_here: dict[str, date] = {}
        ledger: dict[str, dict[str, int]] = {}  # envelope -> cents to add per column

        def credit(envelope: str, column: str, cents: int) -> None:
            moves = ledger.setdefault(envelope, {"credited": 0, "awarded": 0, "returned": 0})
            moves[column] += cents

        for event, seq in batch:
            when = self.local(event)
            base = {"seq": seq, "quartier": event.quartier, "local_date": when}
            add(
                events,
                {
                    "seq": seq,
                    "type": event.type,
                    "quartier": event.quartier,
                    "body": event.model_dump_json(by_alias=True),
                },
            )
            if isinstance(event, EnvieRecorded):
                add(envies, {**base, "envie_id": event.aggregate_id, "retracted_seq": None})
            elif isinstance(event, EnvieClosed):
                if event.data.reason in RETRACTING_REASONS:
                    retractions.append({"envie": event.aggregate_id, "by": seq})
            elif isinstance(event, ProjectAccompanied):
                add(accompaniments, {**base, "project_id": event.aggregate_id})
                for p in dict.fromkeys(event.data.porteur_ids):
                    add(porteurs, {**base, "porteur_id": p})
            elif isinstance(event, ProjectSubmitted):
                last_submitted[event.aggregate_id] = when
                submitted_here[event.aggregate_id] = when
            elif isinstance(event, CommitteeDecided):
                since = last_submitted.get(event.aggregate_id)
                if since is not None and event.data.decision in (
                    Decision.approved,
                    Decision.rejected,
                ):
                    add(decisions, {**base, "days": (when - since).days})
            elif isinstance(event, EnvelopeOpened):
                add(
                    envelopes,
                    {
                        "envelope_id": event.aggregate_id,
                        "quartier": event.quartier,
                        "year": event.data.year,
                        "credited_cents": event.data.amount_cents,
                        "awarded_cents": 0,
                        "returned_cents": 0,
                    },
                )
            elif isinstance(event, EnvelopeToppedUp):
                credit(event.aggregate_id, "credited", event.data.amount_cents)
            elif isinstance(event, GrantSettled):
                credit(event.aggregate_id, "returned", event.data.returned_cents)
            elif isinstance(event, GrantAwarded):
                credit(event.aggregate_id, "awarded", event.data.amount_cents)
                add(
                    grants,
                    {
                        **base,
                        "project_id": event.data.project_id,
                        "amount_cents": event.data.amount_cents,
                    },
                )
            elif isinstance(event, ProjectCompleted):
                add(
                    completions,
                    {
                        **base,
                        "project_id": event.aggregate_id,
                        "outcome": event.data.outcome.value,
                        "participants": event.data.participants,
                    },
                )
            elif isinstance(event, ImpactAssessed):
                scores = event.data.scores
                add(
                    impacts,
                    {
                        **base,
                        "score_sum": sum(int(level) * n for level, n in scores.items()),
                        "answers": sum(scores.values()),
                    },
                )
            elif isinstance(event, MobilisationRecorded):
                for m in dict.fromkeys(event.data.mechanisms):
                    add(mobilisations, {**base, "mechanism": m.value})
        if envelopes in rows:  # one opening per envelope (CONTRACT 1.2): a second is ignored
            rows[envelopes] = _first_openings(session, rows[envelopes])
        for table, table_rows in rows.items():
            insert_rows(session, table, table_rows)
        if ledger:  # after the inserts: an envelope opened in this batch is there
            session.execute(
                envelopes.update()
                .where(envelopes.c.envelope_id == sa.bindparam("envelope"))
                .values(
                    credited_cents=envelopes.c.credited_cents + sa.bindparam("credited"),
                    awarded_cents=envelopes.c.awarded_cents + sa.bindparam("awarded"),
                    returned_cents=envelopes.c.returned_cents + sa.bindparam("returned"),
                ),
                [{"envelope": e, **moves} for e, moves in sorted(ledger.items())],
            )
        if retractions:  # in log order: the first retraction of an envie counts
            session.execute(
                envies.update()
                .where(envies.c.envie_id == sa.bindparam("envie"))
                .where(envies.c.retracted_seq.is_(None))
                .values(retracted_seq=sa.bindparam("by")),
                retractions,
            )
        if submitted_here:
            session.execute(
                submitted.delete().where(submitted.c.project_id.in_(list(submitted_here)))
            )
            session.execute(
                submitted.insert(),
                [{"project_id": p, "local_date": d} for p, d in submitted_here.items()],
            )


def _first_openings(session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The openings of envelopes not opened before (funding never logs a second one)."""
    wanted = sorted({r["envelope_id"] for r in rows})
    seen = set(
        session.scalars(
            sa.select(envelopes.c.envelope_id).where(envelopes.c.envelope_id.in_(wanted))
        )
    )
    first = []
    for row in rows:
        if row["envelope_id"] in seen:
            log.warning("envelope %s opened again in the log: ignored", row["envelope_id"])
            continue
        seen.add(row["envelope_id"])
        first.append(row)
    return first


# --- queries ----------------------------------------------------------------------------


def _scope(table: sa.Table, quartier: str | None, start: date, end: date, as_of: int) -> Any:
    cond = sa.and_(table.c.seq <= as_of, table.c.local_date >= start, table.c.local_date < end)
    if quartier is not None:
        cond = sa.and_(cond, table.c.quartier == quartier)
    return cond


def indicators(
    session: Session, *, quartier: str | None, start: date, end: date, as_of: int
) -> dict[str, Any]:
    """The 12 indicators of CONTRACT 3 from the contribution rows (a few aggregates)."""

    def scalar(query: Any) -> int:
        return int(session.scalar(query) or 0)

    def scope(table: sa.Table) -> Any:
        return _scope(table, quartier, start, end, as_of)

    envies_count = scalar(
        sa.select(sa.func.count()).where(
            scope(envies),
            sa.or_(envies.c.retracted_seq.is_(None), envies.c.retracted_seq > as_of),
        )
    )
    accompanied = scalar(
        sa.select(sa.func.count(sa.distinct(accompaniments.c.project_id))).where(
            scope(accompaniments)
        )
    )
    porteur_count = scalar(
        sa.select(sa.func.count(sa.distinct(porteurs.c.porteur_id))).where(scope(porteurs))
    )
    developed = scalar(
        sa.select(sa.func.count(sa.distinct(grants.c.project_id))).where(scope(grants))
    )
    amount = scalar(sa.select(sa.func.sum(grants.c.amount_cents)).where(scope(grants)))

    latest = (
        sa.select(completions.c.project_id, sa.func.max(completions.c.seq).label("seq"))
        .where(completions.c.seq <= as_of)
        .group_by(completions.c.project_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(completions.c.outcome, completions.c.participants)
        .join(latest, latest.c.seq == completions.c.seq)
        .where(scope(completions))
    ).all()
    achieved = sum(1 for r in rows if r.outcome == "achieved")
    participants = sum(int(r.participants) for r in rows)

    score_sum, answers = session.execute(
        sa.select(sa.func.sum(impacts.c.score_sum), sa.func.sum(impacts.c.answers)).where(
            scope(impacts)
        )
    ).one()
    mechanisms = {m.value: 0 for m in Mechanism}
    for mechanism, count in session.execute(
        sa.select(mobilisations.c.mechanism, sa.func.count())
        .where(scope(mobilisations))
        .group_by(mobilisations.c.mechanism)
    ):
        mechanisms[mechanism] = int(count)
    days = [int(d) for d in session.scalars(sa.select(decisions.c.days).where(scope(decisions)))]

    return {
        "envies_recueillies": envies_count,
        "projets_accompagnes": accompanied,
        "projets_developpes": developed,
        "porteurs": porteur_count,
        "taux_transformation": None
        if envies_count == 0
        else round_half_even(Fraction(developed, envies_count), 4),
        "actions_abouties": achieved,
        "participants": participants,
        "participants_moyen": None
        if not rows
        else round_half_even(Fraction(participants, len(rows)), 2),
        "impact_percu": None
        if not answers
        else round_half_even(Fraction(int(score_sum), int(answers)), 2),
        "mecanismes_mobilisation": mechanisms,
        "delai_decision_jours": None if not days else round_half_even(median(days), 1),
        "montant_attribue_cents": amount,
    }


def envelope_ledgers(session: Session) -> list[tuple[str, str, int, int, int]]:
    """(envelope, quartier, year, cents credited, cents it can still award) of every
    envelope opened; credited = opened + topped up + returned."""
    credited = envelopes.c.credited_cents + envelopes.c.returned_cents
    query = sa.select(
        envelopes.c.envelope_id,
        envelopes.c.quartier,
        envelopes.c.year,
        credited,
        credited - envelopes.c.awarded_cents,
    ).order_by(envelopes.c.envelope_id)
    return [(e, q, int(y), int(c), int(r)) for e, q, y, c, r in session.execute(query)]


def digest_at(session: Session, seq: int) -> str:
    """``sha256:<hex>`` of the log up to ``seq`` (CONTRACT 4)."""
    if seq == 0:
        return "sha256:" + EMPTY_DIGEST.hex()
    value = session.scalar(sa.select(digests.c.digest).where(digests.c.seq == seq))
    if value is None:
        raise LookupError(f"no digest for seq {seq}")
    return "sha256:" + bytes(value).hex()


def logged_events(
    session: Session, quartier: str | None, as_of: int
) -> list[tuple[int, EventBase]]:
    """The followed events up to ``as_of`` (of one quartier, or all), for lineage."""
    q = sa.select(events.c.seq, events.c.body).where(events.c.seq <= as_of).order_by(events.c.seq)
    if quartier is not None:
        q = q.where(events.c.quartier == quartier)
    return [(int(seq), parse_logged(body.encode())) for seq, body in session.execute(q)]
