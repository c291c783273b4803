"""The reference computation of CONTRACT 3 (``services.indicators.reference``).

Every log is built by hand and every expected value is worked out in the test,
with the arithmetic in comments. Unless said otherwise the period is the year
2026 (``[2026-01-01, 2027-01-01)`` on the Paris calendar), all quartiers, the
whole log.
"""

from __future__ import annotations

import random
import uuid
from datetime import date
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.indicators import reference
from services.indicators.reference import INDICATOR_CODES, compute, lineage, round_half_even
from shared.codec import event_from_dict
from shared.events import EventBase, Mechanism
from tests.factories import Q1, Q2, submission

Y2026 = {"start": date(2026, 1, 1), "end": date(2027, 1, 1)}
Y2027 = {"start": date(2027, 1, 1), "end": date(2028, 1, 1)}
IN_2026 = "2026-03-01T10:00:00+01:00"
IN_2025 = "2025-06-01T10:00:00+02:00"
IN_2027 = "2027-02-01T10:00:00+01:00"
ZERO_MECHANISMS = {m.value: 0 for m in Mechanism}

Log = list[tuple[int, EventBase]]


def ev(event_type: str, **fields: Any) -> EventBase:
    return event_from_dict(submission(event_type, **fields))


def seq_log(*events: EventBase) -> Log:
    """Events at stream sequences 1, 2, 3, …"""
    return [(i, e) for i, e in enumerate(events, start=1)]


def run(
    log: Log,
    *,
    quartier: str | None = None,
    as_of_seq: int | None = None,
    period: dict[str, date] = Y2026,
) -> dict[str, Any]:
    return compute(
        log, quartier=quartier, as_of_seq=as_of_seq, start=period["start"], end=period["end"]
    )


def trace(
    log: Log,
    code: str,
    *,
    quartier: str | None = None,
    as_of_seq: int | None = None,
    period: dict[str, date] = Y2026,
) -> list[dict[str, Any]]:
    return lineage(
        log,
        code,
        quartier=quartier,
        as_of_seq=as_of_seq,
        start=period["start"],
        end=period["end"],
    )


# --- event builders (defaults: quartier Q1, occurred in 2026) ------------------------


def envie(envie_id: str, at: str = IN_2026, quartier: str = Q1) -> EventBase:
    return ev("EnvieRecorded", aggregate_id=envie_id, occurred_at=at, quartier=quartier)


def close(envie_id: str, reason: str, at: str = IN_2026, quartier: str = Q1) -> EventBase:
    return ev(
        "EnvieClosed",
        aggregate_id=envie_id,
        occurred_at=at,
        quartier=quartier,
        data={"reason": reason},
    )


def accompany(
    project: str, porteurs: list[str], at: str = IN_2026, quartier: str = Q1
) -> EventBase:
    return ev(
        "ProjectAccompanied",
        aggregate_id=project,
        occurred_at=at,
        quartier=quartier,
        data={"porteur_ids": porteurs},
    )


def award(project: str, cents: int, at: str = IN_2026, quartier: str = Q1) -> EventBase:
    return ev(
        "GrantAwarded",
        aggregate_id=f"FPH-2026-{quartier}",
        occurred_at=at,
        quartier=quartier,
        data={"grant_id": f"g-{project}", "project_id": project, "amount_cents": cents},
    )


def complete(
    project: str, outcome: str, participants: int, at: str = IN_2026, quartier: str = Q1
) -> EventBase:
    return ev(
        "ProjectCompleted",
        aggregate_id=project,
        occurred_at=at,
        quartier=quartier,
        data={"outcome": outcome, "participants": participants},
    )


def assess(scores: dict[str, int], at: str = IN_2026, quartier: str = Q1) -> EventBase:
    return ev(
        "ImpactAssessed",
        aggregate_id="p-impact",
        occurred_at=at,
        quartier=quartier,
        data={"scores": scores},
    )


def mobilise(mechanisms: list[str], at: str = IN_2026, quartier: str = Q1) -> EventBase:
    return ev(
        "MobilisationRecorded",
        aggregate_id="p-mob",
        occurred_at=at,
        quartier=quartier,
        data={"mechanisms": mechanisms},
    )


def submit(project: str, at: str, quartier: str = Q1) -> EventBase:
    return ev("ProjectSubmitted", aggregate_id=project, occurred_at=at, quartier=quartier)


def decide(project: str, decision: str, at: str, quartier: str = Q1) -> EventBase:
    amount = 50000 if decision == "approved" else 0
    return ev(
        "CommitteeDecided",
        aggregate_id=project,
        occurred_at=at,
        quartier=quartier,
        data={"decision": decision, "amount_approved_cents": amount},
    )


# --- rounding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "places", "expected"),
    [
        (Fraction(2345, 1000), 2, 2.34),  # tie, 4 is even: down
        (Fraction(2355, 1000), 2, 2.36),  # tie, 5 is odd: up (float 2.355 would give 2.35)
        (Fraction(1, 32), 4, 0.0312),  # 0.03125, 2 even: down
        (Fraction(3, 32), 4, 0.0938),  # 0.09375, 7 odd: up
        (Fraction(2, 3), 4, 0.6667),
        (Fraction(13, 2), 1, 6.5),
        (Fraction(5, 1), 2, 5.0),
    ],
)
def test_round_half_even(value: Fraction, places: int, expected: float) -> None:
    assert round_half_even(value, places) == expected
    assert round_half_even(value, places) == float(round(value, places))  # Fraction: exact


# --- each indicator -------------------------------------------------------------------


def test_empty_log_and_empty_period_give_zeros_and_nulls() -> None:
    expected = {
        "envies_recueillies": 0,
        "projets_accompagnes": 0,
        "projets_developpes": 0,
        "porteurs": 0,
        "taux_transformation": None,  # no envie
        "actions_abouties": 0,
        "participants": 0,
        "participants_moyen": None,  # no completed project
        "impact_percu": None,  # no answer
        "mecanismes_mobilisation": ZERO_MECHANISMS,
        "delai_decision_jours": None,  # no decision
        "montant_attribue_cents": 0,
    }
    assert run([]) == expected
    # a busy 2026 seen through 2025: nothing
    log = seq_log(
        envie("e1"),
        accompany("p1", ["po1"]),
        submit("p1", IN_2026),
        decide("p1", "approved", IN_2026),
        award("p1", 50000),
        complete("p1", "achieved", 10),
        assess({"4": 3}),
        mobilise(["ecole"]),
    )
    assert run(log, period={"start": date(2025, 1, 1), "end": date(2026, 1, 1)}) == expected
    assert list(run(log)) == list(INDICATOR_CODES)
    for code in INDICATOR_CODES:
        assert trace([], code) == []


def test_envies_recueillies_counts_records_in_the_period() -> None:
    log = seq_log(envie("e1"), envie("e2"), envie("e3"), envie("e0", at=IN_2025))
    assert run(log)["envies_recueillies"] == 3  # e1, e2, e3; e0 is 2025


def test_retracting_closes_remove_envies_other_reasons_do_not() -> None:
    log = seq_log(
        *(envie(f"e{i}") for i in range(1, 7)),
        close("e1", "duplicate"),
        close("e2", "entered_in_error", at=IN_2027),  # closed after the period: still retracts
        close("e3", "withdrawn"),
        close("e4", "redirected"),
        close("e5", "out_of_scope"),
    )
    # 6 recorded - e1 (duplicate) - e2 (entered_in_error) = 4; e3, e4, e5 still count
    assert run(log)["envies_recueillies"] == 4
    # the close of 2027 retracts the 2026 envie; no envie is recorded in 2027
    assert run(log, period=Y2027)["envies_recueillies"] == 0


def test_retraction_after_as_of_seq_does_not_apply() -> None:
    log = seq_log(envie("e1"), envie("e2"), close("e1", "duplicate"))
    assert run(log, as_of_seq=2)["envies_recueillies"] == 2  # the close (seq 3) not seen yet
    assert run(log, as_of_seq=3)["envies_recueillies"] == 1  # 2 - e1
    assert run(log)["envies_recueillies"] == 1


def test_projets_accompagnes_are_distinct_projects() -> None:
    log = seq_log(
        accompany("p1", ["po1"]),
        accompany("p1", ["po2"]),  # a new porteur on p1: same project
        accompany("p2", ["po3"]),
        accompany("p3", ["po4"], at=IN_2025),
    )
    assert run(log)["projets_accompagnes"] == 2  # {p1, p2}


def test_porteurs_are_distinct_over_accompaniments() -> None:
    log = seq_log(
        accompany("p1", ["po1", "po2"]),
        accompany("p2", ["po2", "po3"]),
        accompany("p3", ["po9"], at=IN_2027),
    )
    assert run(log)["porteurs"] == 3  # {po1, po2, po3}


def test_projets_developpes_and_montant_over_grant_awarded() -> None:
    log = seq_log(
        award("p1", 50000),
        award("p2", 120000),
        award("p1", 30000),  # a second grant for p1: still one project, both amounts
        award("p3", 99900, at=IN_2025),
        ev("GrantRefused", occurred_at=IN_2026, data={"project_id": "p4"}),
        ev("GrantPaid", occurred_at=IN_2026),
    )
    result = run(log)
    assert result["projets_developpes"] == 2  # {p1, p2}
    assert result["montant_attribue_cents"] == 200000  # 50000 + 120000 + 30000


def test_taux_transformation() -> None:
    log = seq_log(envie("e1"), envie("e2"), envie("e3"), award("p1", 1000), award("p2", 1000))
    assert run(log)["taux_transformation"] == 0.6667  # 2 / 3 = 0.66666…
    no_envie = seq_log(award("p1", 1000))
    assert run(no_envie)["taux_transformation"] is None
    retracted_all = seq_log(envie("e1"), close("e1", "duplicate"), award("p1", 1000))
    assert run(retracted_all)["taux_transformation"] is None  # 0 envie after retraction


def test_taux_transformation_rounds_half_even() -> None:
    envies = [envie(f"e{i}") for i in range(32)]
    one = seq_log(*envies, award("p1", 1000))
    assert run(one)["taux_transformation"] == 0.0312  # 1 / 32 = 0.03125 -> 0.0312
    three = seq_log(*envies, award("p1", 1000), award("p2", 1000), award("p3", 1000))
    assert run(three)["taux_transformation"] == 0.0938  # 3 / 32 = 0.09375 -> 0.0938


def test_completions_achieved_participants_and_mean() -> None:
    log = seq_log(
        complete("p1", "achieved", 25),
        complete("p2", "partial", 10),
        complete("p3", "abandoned", 3),
        complete("p3", "achieved", 8),  # supersedes p3's first completion
        complete("p4", "achieved", 50, at=IN_2025),
    )
    result = run(log)
    assert result["actions_abouties"] == 2  # p1, p3 (latest achieved); p2 partial
    assert result["participants"] == 43  # 25 + 10 + 8 (p3's latest only)
    assert result["participants_moyen"] == 14.33  # 43 / 3 projects = 14.333…


def test_latest_completion_is_by_log_order_not_by_date() -> None:
    log = seq_log(
        complete("p1", "achieved", 40, at="2026-09-01T10:00:00+02:00"),
        complete("p1", "partial", 12, at="2026-05-01T10:00:00+02:00"),  # later in log, earlier date
    )
    result = run(log)
    assert (result["actions_abouties"], result["participants"]) == (0, 12)


def test_supersession_moves_a_completion_across_periods() -> None:
    log = seq_log(
        complete("p1", "achieved", 20, at="2026-11-15T10:00:00+01:00"),
        complete("p1", "achieved", 30, at="2027-01-10T10:00:00+01:00"),  # supersedes, in 2027
    )
    before = run(log, as_of_seq=1)
    assert (before["actions_abouties"], before["participants"]) == (1, 20)
    assert before["participants_moyen"] == 20.0
    old = run(log)  # 2026, now that p1's latest completion is in 2027: nothing
    assert (old["actions_abouties"], old["participants"], old["participants_moyen"]) == (
        0,
        0,
        None,
    )
    new = run(log, period=Y2027)
    assert (new["actions_abouties"], new["participants"], new["participants_moyen"]) == (
        1,
        30,
        30.0,
    )


def test_impact_percu_is_the_mean_over_all_answers() -> None:
    log = seq_log(
        assess({"3": 2, "4": 5, "5": 10}),  # 6 + 20 + 50 = 76 over 17 answers
        assess({"1": 1, "2": 2}),  # 1 + 4 = 5 over 3 answers
        assess({"1": 100}, at=IN_2025),
    )
    assert run(log)["impact_percu"] == 4.05  # (76 + 5) / (17 + 3) = 81 / 20 = 4.05


def test_impact_percu_rounds_half_even() -> None:
    # 131 answers "2" + 69 answers "3": (262 + 207) / 200 = 469 / 200 = 2.345 -> 2.34
    assert run(seq_log(assess({"2": 131, "3": 69})))["impact_percu"] == 2.34
    # 129 answers "2" + 71 answers "3": (258 + 213) / 200 = 471 / 200 = 2.355 -> 2.36
    assert run(seq_log(assess({"2": 129, "3": 71})))["impact_percu"] == 2.36


def test_impact_percu_is_null_without_answers() -> None:
    assert run(seq_log(assess({"5": 0, "3": 0})))["impact_percu"] is None  # 0 answers


def test_mecanismes_mobilisation_lists_all_nine() -> None:
    log = seq_log(
        mobilise(["ecole", "affichage"]),
        mobilise(["ecole", "mediateur", "autre"]),
        mobilise(["reseaux_sociaux"], at=IN_2027),
    )
    assert run(log)["mecanismes_mobilisation"] == {
        **ZERO_MECHANISMS,
        "ecole": 2,
        "affichage": 1,
        "mediateur": 1,
        "autre": 1,
    }


def test_delai_decision_jours_uses_the_latest_submission_before_the_decision() -> None:
    log = seq_log(
        submit("p1", "2025-12-20T10:00:00+01:00"),  # submission outside the period still used
        decide("p1", "rejected", "2026-01-09T10:00:00+01:00"),  # 2025-12-20 -> 2026-01-09: 20
        submit("p1", "2026-02-01T10:00:00+01:00"),  # resubmitted
        decide("p1", "deferred", "2026-02-05T10:00:00+01:00"),  # deferred: not a delay
        decide("p1", "approved", "2026-02-11T10:00:00+01:00"),  # 02-01 -> 02-11: 10
        decide("p2", "approved", "2026-03-01T10:00:00+01:00"),  # no submission before: skipped
        submit("p2", "2026-02-20T10:00:00+01:00"),  # after p2's decision in log order
    )
    # delays [20, 10]: median of an even count = (10 + 20) / 2 = 15.0
    assert run(log)["delai_decision_jours"] == 15.0
    assert [e["contribution"] for e in trace(log, "delai_decision_jours")] == [20, 10]


def test_delai_decision_jours_median_odd_and_even_counts() -> None:
    def project(name: str, days: int) -> list[EventBase]:
        return [
            submit(name, "2026-03-01T10:00:00+01:00"),
            decide(name, "approved", f"2026-03-{1 + days:02d}T10:00:00+01:00"),
        ]

    odd = seq_log(*project("p1", 2), *project("p2", 9), *project("p3", 5))
    assert run(odd)["delai_decision_jours"] == 5.0  # sorted [2, 5, 9]: 5
    even = seq_log(*project("p1", 2), *project("p2", 8), *project("p3", 5), *project("p4", 28))
    assert run(even)["delai_decision_jours"] == 6.5  # sorted [2, 5, 8, 28]: (5 + 8) / 2 = 6.5


def test_delai_counts_calendar_days_on_the_local_dates() -> None:
    log = seq_log(
        submit("p1", "2026-03-01T23:30:00Z"),  # 2026-03-02 00:30 in Paris
        decide("p1", "approved", "2026-03-03T22:30:00Z"),  # 2026-03-03 23:30 in Paris
    )
    # local dates 03-02 -> 03-03: 1 day (UTC dates would give 2; elapsed hours 47)
    assert run(log)["delai_decision_jours"] == 1.0
    utc = compute(
        log,
        quartier=None,
        as_of_seq=None,
        start=date(2026, 1, 1),
        end=date(2027, 1, 1),
        tz=ZoneInfo("UTC"),
    )
    assert utc["delai_decision_jours"] == 2.0  # 03-01 -> 03-03 in UTC


# --- periods, quartiers, the log ---------------------------------------------------


def test_new_year_in_paris() -> None:
    late = envie("e1", at="2026-12-31T23:30:00Z")  # 2027-01-01 00:30 in Paris
    early = envie("e2", at="2026-12-31T22:30:00Z")  # 2026-12-31 23:30 in Paris
    log = seq_log(late, early)
    assert run(log)["envies_recueillies"] == 1  # e2
    assert run(log, period=Y2027)["envies_recueillies"] == 1  # e1
    assert [e["event_id"] for e in trace(log, "envies_recueillies")] == [str(early.event_id)]
    assert [e["local_date"] for e in trace(log, "envies_recueillies", period=Y2027)] == [
        "2027-01-01"
    ]


def test_an_event_id_twice_in_the_log_counts_once() -> None:
    e1 = envie("e1")
    grant = award("p1", 50000)
    same_id_other_amount = event_from_dict(
        {**submission("GrantAwarded", occurred_at=IN_2026), "event_id": str(grant.event_id)}
        | {"data": {"grant_id": "gx", "project_id": "p9", "amount_cents": 999}}
    )
    log = seq_log(e1, grant, envie("e2"), e1, same_id_other_amount)
    result = run(log)
    assert result["envies_recueillies"] == 2  # e1 (seq 1, not again at seq 4), e2
    assert result["montant_attribue_cents"] == 50000  # the first occurrence only
    assert result["projets_developpes"] == 1  # p1; p9 was in the ignored re-occurrence
    assert [e["seq"] for e in trace(log, "envies_recueillies")] == [1, 3]


def test_a_repeated_completion_does_not_become_the_latest() -> None:
    first = complete("p1", "achieved", 20)
    log = seq_log(first, complete("p1", "abandoned", 0), first)
    # seq 3 is seq 1 again (ignored): the latest is the abandoned one of seq 2
    assert (run(log)["actions_abouties"], run(log)["participants"]) == (0, 0)


def test_quartier_filter_vs_all_quartiers() -> None:
    log = seq_log(
        envie("e1", quartier=Q1),
        envie("e2", quartier=Q2),
        envie("e3", quartier=Q2),
        accompany("p1", ["po1"], quartier=Q1),
        accompany("p2", ["po1"], quartier=Q2),  # the same porteur in both quartiers
        award("p1", 10000, quartier=Q1),
        award("p2", 25000, quartier=Q2),
        complete("p2", "achieved", 7, quartier=Q2),
        mobilise(["ecole"], quartier=Q1),
        mobilise(["ecole"], quartier=Q2),
    )
    q1, q2, every = run(log, quartier=Q1), run(log, quartier=Q2), run(log)
    assert (q1["envies_recueillies"], q2["envies_recueillies"], every["envies_recueillies"]) == (
        1,
        2,
        3,
    )
    assert (q1["porteurs"], q2["porteurs"], every["porteurs"]) == (1, 1, 1)  # po1 once overall
    assert (q1["projets_accompagnes"], every["projets_accompagnes"]) == (1, 2)
    assert (q1["montant_attribue_cents"], every["montant_attribue_cents"]) == (10000, 35000)
    assert (q1["taux_transformation"], q2["taux_transformation"]) == (1.0, 0.5)  # 1/1, 1/2
    assert every["taux_transformation"] == 0.6667  # 2 / 3
    assert (q1["actions_abouties"], q2["actions_abouties"]) == (0, 1)
    assert q1["mecanismes_mobilisation"]["ecole"] == 1
    assert every["mecanismes_mobilisation"]["ecole"] == 2


def test_as_of_seq_cuts_the_log() -> None:
    log = seq_log(
        envie("e1"),  # 1
        envie("e2"),  # 2
        award("p1", 40000),  # 3
        envie("e3"),  # 4
        award("p2", 60000),  # 5
    )
    at3 = run(log, as_of_seq=3)
    assert (at3["envies_recueillies"], at3["montant_attribue_cents"]) == (2, 40000)
    assert at3["taux_transformation"] == 0.5  # 1 / 2
    at5 = run(log, as_of_seq=5)
    assert at5 == run(log)
    assert at5["taux_transformation"] == 0.6667  # 2 / 3
    assert run(log, as_of_seq=0)["envies_recueillies"] == 0


def test_the_log_is_read_in_seq_order_whatever_the_input_order() -> None:
    log = seq_log(
        envie("e1"),
        close("e1", "duplicate"),
        complete("p1", "achieved", 5),
        complete("p1", "partial", 9),
        award("p1", 1000),
    )
    shuffled = log[:]
    random.Random(4).shuffle(shuffled)
    assert run(shuffled) == run(log)
    assert run(shuffled, as_of_seq=3) == run(log, as_of_seq=3)


# --- lineage ------------------------------------------------------------------------


def test_lineage_marks_retracted_envies() -> None:
    e1, e2, e3 = envie("e1"), envie("e2"), envie("e3")
    dup = close("e1", "duplicate", at=IN_2027)
    log = seq_log(e1, e2, e3, close("e2", "withdrawn"), dup)
    entries = trace(log, "envies_recueillies")
    assert [(e["event_id"], e["status"]) for e in entries] == [
        (str(e1.event_id), "retracted"),
        (str(e2.event_id), "counted"),  # withdrawn still counts
        (str(e3.event_id), "counted"),
    ]
    first = entries[0]
    assert first["retracted_by"]["event_id"] == str(dup.event_id)
    assert first["retracted_by"]["seq"] == 5
    assert first["retracted_by"]["reason"] == "duplicate"
    assert {k: first[k] for k in ("seq", "type", "quartier", "contribution")} == {
        "seq": 1,
        "type": "EnvieRecorded",
        "quartier": Q1,
        "contribution": 1,
    }
    assert first["occurred_at"] == e1.occurred_at.isoformat()
    # before the close was logged, e1 counted
    assert [e["status"] for e in trace(log, "envies_recueillies", as_of_seq=4)] == ["counted"] * 3


def test_lineage_marks_superseded_completions() -> None:
    old = complete("p1", "achieved", 20, at="2026-11-15T10:00:00+01:00")
    new = complete("p1", "partial", 30, at="2027-01-10T10:00:00+01:00")
    other = complete("p2", "achieved", 4)
    log = seq_log(old, other, new)
    entries = trace(log, "participants")
    assert [(e["event_id"], e["status"], e["contribution"]) for e in entries] == [
        (str(old.event_id), "superseded", 20),
        (str(other.event_id), "counted", 4),
    ]
    assert entries[0]["superseded_by"]["event_id"] == str(new.event_id)
    assert entries[0]["superseded_by"]["local_date"] == "2027-01-10"
    abouties = trace(log, "actions_abouties")
    assert [(e["status"], e["outcome"], e["contribution"]) for e in abouties] == [
        ("superseded", "achieved", 1),
        ("counted", "achieved", 1),
    ]
    in_2027 = trace(log, "actions_abouties", period=Y2027)
    assert [(e["event_id"], e["status"], e["contribution"]) for e in in_2027] == [
        (str(new.event_id), "counted", 0),  # partial: counted, contributes 0
    ]


def test_lineage_of_taux_transformation_has_numerator_and_denominator() -> None:
    e1, e2, e3 = envie("e1"), envie("e2"), envie("e3")
    grant = award("p1", 1000)
    log = seq_log(e1, grant, e2, e3, close("e3", "entered_in_error"))
    entries = trace(log, "taux_transformation")
    assert [(e["seq"], e["role"], e["status"], e["contribution"]) for e in entries] == [
        (1, "denominator", "counted", 1),
        (2, "numerator", "counted", 1),
        (3, "denominator", "counted", 1),
        (4, "denominator", "retracted", 1),
    ]
    assert run(log)["taux_transformation"] == 0.5  # 1 / (3 - 1)


def test_lineage_of_means_has_numerator_and_denominator() -> None:
    a = assess({"3": 2, "4": 5, "5": 10})
    log = seq_log(a, complete("p1", "achieved", 9), complete("p2", "partial", 6))
    impact = trace(log, "impact_percu")
    assert [(e["event_id"], e["role"], e["contribution"]) for e in impact] == [
        (str(a.event_id), "numerator", 76),  # 3*2 + 4*5 + 5*10
        (str(a.event_id), "denominator", 17),  # 2 + 5 + 10
    ]
    assert impact[0]["scores"] == {"3": 2, "4": 5, "5": 10}
    moyen = trace(log, "participants_moyen")
    assert [(e["seq"], e["role"], e["contribution"]) for e in moyen] == [
        (2, "numerator", 9),
        (2, "denominator", 1),
        (3, "numerator", 6),
        (3, "denominator", 1),
    ]
    assert run(log)["participants_moyen"] == 7.5  # (9 + 6) / 2


def test_lineage_of_distinct_counts_and_delays() -> None:
    s = submit("p1", "2026-02-01T10:00:00+01:00")
    d = decide("p1", "approved", "2026-02-04T10:00:00+01:00")
    log = seq_log(accompany("p1", ["po1", "po2"]), accompany("p1", ["po2", "po3"]), s, d)
    assert [(e["keys"], e["contribution"]) for e in trace(log, "porteurs")] == [
        (["po1", "po2"], 2),
        (["po2", "po3"], 1),  # po2 already counted
    ]
    assert [e["contribution"] for e in trace(log, "projets_accompagnes")] == [1, 0]
    [delay] = trace(log, "delai_decision_jours")
    assert (delay["event_id"], delay["contribution"]) == (str(d.event_id), 3)
    assert (delay["submitted"]["event_id"], delay["submitted"]["seq"]) == (str(s.event_id), 3)


def _rich_log() -> Log:
    """A log touching every indicator, in two quartiers and three years."""
    return seq_log(
        envie("e1"),
        envie("e2", quartier=Q2),
        envie("e3", at="2026-12-31T23:30:00Z"),
        envie("e4"),
        close("e4", "duplicate"),
        close("e1", "withdrawn"),
        accompany("p1", ["po1", "po2"]),
        accompany("p2", ["po2"], quartier=Q2),
        submit("p1", "2026-02-01T10:00:00+01:00"),
        decide("p1", "approved", "2026-02-20T10:00:00+01:00"),
        award("p1", 45000),
        submit("p2", "2026-03-01T10:00:00+01:00", quartier=Q2),
        decide("p2", "rejected", "2026-03-05T10:00:00+01:00", quartier=Q2),
        submit("p2", "2026-04-01T10:00:00+02:00", quartier=Q2),
        decide("p2", "approved", "2026-04-12T10:00:00+02:00", quartier=Q2),
        award("p2", 30000, quartier=Q2),
        complete("p1", "achieved", 12),
        complete("p1", "achieved", 15, at=IN_2027),
        complete("p2", "partial", 8, quartier=Q2),
        assess({"4": 3, "5": 1}),
        assess({"2": 1}, quartier=Q2),
        mobilise(["ecole", "affichage"]),
        mobilise(["ecole"], quartier=Q2),
        envie("e5", at=IN_2025),
    )


def _from_lineage(code: str, entries: list[dict[str, Any]]) -> Any:
    """Recompute a value from its lineage, as the lineage docstring says."""
    counted = [e for e in entries if e["status"] == "counted"]
    if code in ("taux_transformation", "participants_moyen", "impact_percu"):
        num = sum(e["contribution"] for e in counted if e["role"] == "numerator")
        den = sum(e["contribution"] for e in counted if e["role"] == "denominator")
        places = 4 if code == "taux_transformation" else 2
        return None if den == 0 else round_half_even(Fraction(num, den), places)
    if code == "mecanismes_mobilisation":
        out = dict(ZERO_MECHANISMS)
        for e in counted:
            for mechanism, n in e["contribution"].items():
                out[mechanism] += n
        return out
    if code == "delai_decision_jours":
        days = [e["contribution"] for e in counted]
        return None if not days else round_half_even(reference.median(days), 1)
    return sum(e["contribution"] for e in counted)


@pytest.mark.parametrize("code", INDICATOR_CODES)
@pytest.mark.parametrize("quartier", [None, Q1, Q2])
@pytest.mark.parametrize("period", [Y2026, Y2027])
@pytest.mark.parametrize("as_of_seq", [None, 5, 11, 17])
def test_every_value_is_traced_by_its_lineage(
    code: str, quartier: str | None, period: dict[str, date], as_of_seq: int | None
) -> None:
    log = _rich_log()
    entries = trace(log, code, quartier=quartier, period=period, as_of_seq=as_of_seq)
    value = run(log, quartier=quartier, period=period, as_of_seq=as_of_seq)[code]
    assert _from_lineage(code, entries) == value
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    for e in entries:
        assert e["status"] in ("counted", "retracted", "superseded")
        assert quartier is None or e["quartier"] == quartier
        assert period["start"].isoformat() <= e["local_date"] < period["end"].isoformat()
        assert as_of_seq is None or e["seq"] <= as_of_seq
        uuid.UUID(e["event_id"])


def test_rich_log_values_for_2026() -> None:
    result = run(_rich_log())
    assert result == {
        "envies_recueillies": 2,  # e1 (withdrawn counts), e2; e3 is 2027 in Paris; e4 duplicate
        "projets_accompagnes": 2,  # p1, p2
        "projets_developpes": 2,  # p1, p2
        "porteurs": 2,  # po1, po2
        "taux_transformation": 1.0,  # 2 / 2
        "actions_abouties": 0,  # p1's latest completion is in 2027; p2 partial
        "participants": 8,  # p2 only
        "participants_moyen": 8.0,  # 8 / 1
        "impact_percu": 3.8,  # (4*3 + 5*1 + 2*1) / (3 + 1 + 1) = 19 / 5
        "mecanismes_mobilisation": {**ZERO_MECHANISMS, "ecole": 2, "affichage": 1},
        "delai_decision_jours": 11.0,  # p1 19 days, p2 4 then 11: sorted [4, 11, 19] -> 11
        "montant_attribue_cents": 75000,  # 45000 + 30000
    }


def test_compute_is_deterministic_and_lineage_rejects_unknown_codes() -> None:
    log = _rich_log()
    assert run(log) == run(log)
    assert trace(log, "participants") == trace(log, "participants")
    with pytest.raises(ValueError, match="unknown indicator"):
        trace(log, "nope")
