"""``fph-demo`` (``make demo``): a realistic year for three quartiers, through the inbox.

Against the system ``make run`` (``fph-run``) starts, the demo submits what the
partners and the city of a deployment would over one year, as they would: each
event published to ``fph.inbox.<source>.<type>`` with the partners' client
(``shared.client.SubmitClient``), then waiting for its receipt.

- ``city`` (the finance desk and the FPH committee): envelopes opened and one
  topped up, committee decisions (approved, rejected then resubmitted,
  deferred), payments and settlements;
- ``centre-social-nord`` and ``conseil-citoyen`` (partners): envies (every channel
  and theme; ``conseil-citoyen``'s software still sends ``EnvieRecorded`` schema 1),
  porteurs, projects accompanied (some from several envies and porteurs, one
  porteur added later), submissions, completions (one project completed twice,
  the later superseding), impact surveys and mobilisation, an envie closed as a
  duplicate;
- the funding service answers each approved decision by itself (``GrantAwarded``,
  once ``GrantRefused`` for ``cap_exceeded``): the demo reads the answers from the
  log (the envelope's subject) before it pays the grants;
- a few deliberately bad submissions, refused with every reason (printed).

Events are submitted in the order of their ``occurred_at`` (all in the past, the
current year's compressed up to yesterday), and each source's events of one
service in a row are pipelined. Event ids are UUID v5 of the seed, the year and a
label; aggregate ids too: running the demo again resubmits the same events and
gets the same receipts (the original ``seq``), and adds nothing to the log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from shared.client import ReceiptTimeout, SubmitClient
from shared.events import envelope_id, owner_of
from shared.inbox import FUNDING_ONLY
from shared.log import EventLog
from shared.receipts import Receipt
from shared.settings import CommonSettings, nats_servers
from shared.subjects import INBOX_STREAM

DEMO_NAMESPACE = uuid.UUID("0b7f6a2e-5c1d-4e8a-9d3f-2a6c8e1b4f70")
DEFAULT_NATS_URL = f"nats://127.0.0.1:{os.environ.get('FPH_RUN_NATS_PORT', '4333')}"
"""Where ``fph-run`` starts nats-server (its ``--nats-port``, 4333 unless set)."""

CITY = "city"
CSN = "centre-social-nord"
CC = "conseil-citoyen"
PARTNERS_BY_QUARTIER: tuple[tuple[str, ...], ...] = ((CSN,), (CC,), (CSN, CC))
"""Who accompanies projects in the first, second and third quartier."""

SESSION_DAYS = (55, 110, 165, 215, 270, 325)
"""Days of the year (0 = 1 January) the FPH committee meets."""

ENVELOPES = (  # per quartier: amount, cap per project, funders (cents)
    (1_500_000, 300_000, (("Ville", 1_000_000), ("Etat (ANCT)", 500_000))),
    (1_200_000, 250_000, (("Ville", 800_000), ("Etat (ANCT)", 400_000))),
    (1_000_000, 250_000, (("Ville", 700_000), ("Etat (ANCT)", 300_000))),
)
TOP_UP = (2, 250, 300_000, "Bailleur social")  # quartier index, day, cents, funder
RECEIPT_TIMEOUT = 30.0
ANSWER_TIMEOUT = 30.0

CHANNELS_BY_PARTNER = {
    CSN: ("centre_social", "centre_social", "permanence", "mediation_rue", "evenement"),
    CC: ("conseil_citoyen", "conseil_citoyen", "en_ligne", "evenement", "autre", "permanence"),
}
PLACES = {
    "permanence": "Permanence du mardi",
    "centre_social": "Centre social Nord",
    "mediation_rue": "Au pied de la tour B",
    "evenement": "Fête de quartier",
    "en_ligne": "Plateforme de la ville",
    "conseil_citoyen": "Réunion du conseil citoyen",
    "autre": "Marché du samedi",
}
MECHANISMS_BY_PARTNER = {
    CSN: ("centre_social", "bouche_a_oreille", "affichage", "ecole", "mediateur"),
    CC: ("conseil_citoyen", "reseaux_sociaux", "evenement", "bouche_a_oreille", "autre"),
}

ENVIES_BY_THEME: dict[str, tuple[str, ...]] = {
    "culture": (
        "Un concert dans la cour de l'école",
        "Une exposition des photos des habitants",
        "Du théâtre pour les enfants pendant les vacances",
    ),
    "sport": (
        "Rénover le terrain de basket",
        "Des cours de gym douce le matin",
        "Un club de course à pied pour les mamans",
    ),
    "cadre_de_vie": (
        "Des bancs et de l'ombre square Jean-Moulin",
        "Plus de poubelles près de l'arrêt de bus",
        "Éclairer le passage entre les deux tours",
    ),
    "solidarite": (
        "Une épicerie solidaire",
        "Un repas partagé chaque mois",
        "Accompagner les personnes âgées pour les courses",
    ),
    "jeunesse": (
        "Un local pour les ados le soir",
        "Des sorties pour les jeunes pendant l'été",
        "Un atelier BAFA dans le quartier",
    ),
    "numerique": (
        "Aider à faire les démarches en ligne",
        "Un atelier pour apprendre à se servir d'un smartphone",
        "Du wifi gratuit au centre social",
    ),
    "education": (
        "Un soutien scolaire pour les collégiens",
        "Des cours de français pour les parents",
        "Une boîte à livres devant la médiathèque",
    ),
    "sante": (
        "Une journée de dépistage",
        "Des ateliers nutrition pour les familles",
        "Un groupe de parole pour les aidants",
    ),
    "environnement": (
        "Un compost collectif",
        "Nettoyer les berges avec les voisins",
        "Planter des arbres le long de l'avenue",
    ),
    "autre": (
        "Une fête pour les 50 ans de la cité",
        "Un annuaire des savoir-faire des voisins",
        "Un lieu pour se retrouver le dimanche",
    ),
}

IDEAS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Jardin partagé au pied des immeubles",
        "environnement",
        (
            "Un jardin partagé au pied des immeubles",
            "Planter des légumes avec les enfants",
            "Des bacs à fleurs dans la cour",
        ),
    ),
    (
        "Atelier vélo solidaire",
        "jeunesse",
        (
            "Un atelier pour réparer nos vélos",
            "Apprendre aux jeunes à entretenir un vélo",
            "Un local pour ranger les vélos",
        ),
    ),
    (
        "Tournoi de foot inter-quartiers",
        "sport",
        (
            "Un tournoi de foot avec les autres quartiers",
            "Des maillots pour l'équipe du quartier",
            "Faire jouer les filles aussi",
        ),
    ),
    (
        "Ateliers numériques pour les seniors",
        "numerique",
        (
            "Aider les anciens avec internet",
            "Des tablettes à prêter aux seniors",
            "Apprendre les appels vidéo pour voir les petits-enfants",
        ),
    ),
    (
        "Fresque murale avec les jeunes",
        "culture",
        (
            "Une fresque sur le mur du gymnase",
            "Un atelier graff encadré",
            "Embellir l'entrée de la résidence",
        ),
    ),
    (
        "Aide aux devoirs entre voisins",
        "education",
        (
            "Des voisins qui aident aux devoirs",
            "Un coin calme pour réviser",
            "Des étudiants du quartier pour le soutien scolaire",
        ),
    ),
    (
        "Journée santé et bien-être",
        "sante",
        (
            "Une journée santé sur la place",
            "Parler sport et alimentation avec des pros",
            "Un stand de dépistage gratuit",
        ),
    ),
    (
        "Repair café mensuel",
        "environnement",
        (
            "Réparer plutôt que jeter",
            "Un repair café une fois par mois",
            "Apprendre à réparer son grille-pain",
        ),
    ),
    (
        "Cinéma en plein air",
        "culture",
        (
            "Du cinéma en plein air l'été",
            "Projeter des films choisis par les habitants",
            "Une soirée ciné pour les familles",
        ),
    ),
    (
        "Fête des voisins de la résidence",
        "solidarite",
        (
            "Une vraie fête des voisins",
            "Se rencontrer entre voisins des tours",
            "Un repas partagé dans la cour",
        ),
    ),
    (
        "Sortie à la mer pour les familles",
        "solidarite",
        (
            "Emmener les familles à la mer",
            "Une sortie pour ceux qui ne partent pas en vacances",
            "Un car pour la plage en juillet",
        ),
    ),
    (
        "Podcast des jeunes du quartier",
        "numerique",
        (
            "Un podcast fait par les jeunes",
            "Raconter le quartier en audio",
            "Apprendre à enregistrer et monter du son",
        ),
    ),
    (
        "Marche exploratoire des femmes",
        "cadre_de_vie",
        (
            "Marcher ensemble pour repérer les endroits mal éclairés",
            "Se sentir en sécurité le soir",
            "Dire à la ville ce qui ne va pas dans nos rues",
        ),
    ),
    (
        "Bibliothèque de rue",
        "education",
        (
            "Des livres en bas des immeubles",
            "Lire des histoires aux enfants le mercredi",
            "Une bibliothèque qui vient à nous",
        ),
    ),
)


# --- the plan ---------------------------------------------------------------------


@dataclass
class Item:
    """One submission of the plan, built when its turn comes (payments need the grant)."""

    when: When  # in the template year: the order of submission
    order: int
    label: str
    source: str
    type: str
    build: Callable[[Story], dict[str, Any] | None]
    refusal: str | None = None
    """What is wrong with it, for a deliberately bad submission (None: must be accepted)."""
    tolerate: frozenset[str] = frozenset()
    """Error codes that do not matter (an envelope opened by someone else already)..."""
    instead: list[Item] = field(default_factory=list)
    """... and what to submit then (top that envelope up with what this one brought)."""

    @property
    def owner(self) -> str:
        return "intake" if self.type in FUNDING_ONLY else owner_of(self.type) or "intake"


@dataclass
class Decision:
    """An approved committee decision the funding service must answer."""

    label: str
    event_id: str
    quartier: str
    project_id: str
    amount_cents: int
    expect: str  # "GrantAwarded" or "GrantRefused (<reason>)"


@dataclass
class Answer:
    type: str
    event_id: str
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return self.type if self.type == "GrantAwarded" else f"GrantRefused ({self.data['reason']})"


@dataclass
class Story:
    """What the run has learnt so far: funding's answers to the decisions."""

    answers: dict[str, Answer] = field(default_factory=dict)  # by decision label


@dataclass(frozen=True)
class When:
    """A moment of the template year: day (0 = 1 January, up to 364) and local hour."""

    day: float
    hour: int
    minute: int = 0

    @property
    def key(self) -> float:
        return int(self.day) + (self.hour * 60 + self.minute) / 1440


class Calendar:
    """Days of a template year (0-364) -> local times of the demo's year, all in the past.

    A past year is used as it is; the current one is compressed into 1 January ..
    yesterday, so that every ``occurred_at`` is before today (and the same all day long).
    """

    def __init__(self, year: int, tz: ZoneInfo, today: date) -> None:
        self.year, self.tz = year, tz
        self.start = date(year, 1, 1)
        end = min(date(year + 1, 1, 1), today)
        self.days = (end - self.start).days
        self.factor = min(1.0, self.days / 365)

    def at(self, when: When) -> datetime:
        local = self.start + timedelta(days=int(int(when.day) * self.factor))
        return datetime(local.year, local.month, local.day, when.hour, when.minute, tzinfo=self.tz)


@dataclass
class ProjectPlan:
    """The planner's view of one project while its story is written."""

    project_id: str
    correlation_id: str
    quartier: str
    partner: str
    title: str
    ideas: list[tuple[str, str]]  # (theme, summary) of the envies it is born from
    envies: list[str] = field(default_factory=list)
    porteurs: list[str] = field(default_factory=list)
    submission_id: str | None = None
    requested: int = 0
    expected_participants: int = 0
    award_label: str | None = None
    award_cents: int = 0
    paid_cents: int = 0


class Planner:
    """Writes the year's submissions for the quartiers (deterministic in seed and year)."""

    def __init__(
        self, year: int, seed: int, quartiers: Sequence[str], calendar: Calendar, now: datetime
    ) -> None:
        self.year, self.seed, self.quartiers = year, seed, list(quartiers)
        self.cal = calendar
        self.now = now
        self.rng = random.Random(f"fph-demo:{seed}:{year}")
        self.items: list[Item] = []
        self.decisions: dict[str, Decision] = {}
        self.interesting: dict[str, str] = {}  # what the summary points at
        self.projects: dict[str, ProjectPlan] = {}

    # ids ---------------------------------------------------------------------

    def uid(self, label: str) -> str:
        return str(uuid.uuid5(DEMO_NAMESPACE, f"fph-demo:{self.seed}:{self.year}:{label}"))

    def aggregate(self, kind: str, label: str) -> str:
        return f"{kind}-{uuid.UUID(self.uid(f'{kind}:{label}')).hex[:12]}"

    # events ------------------------------------------------------------------

    def add(
        self,
        label: str,
        source: str,
        event_type: str,
        when: When,
        quartier: str,
        aggregate_id: str,
        data: dict[str, Any] | Callable[[Story], dict[str, Any] | None],
        *,
        correlation_id: str | None = None,
        causation_id: str | Callable[[Story], str | None] | None = None,
        schema_version: int = 1,
        refusal: str | None = None,
        occurred_at: datetime | None = None,
        tolerate: frozenset[str] = frozenset(),
        instead: Sequence[Item] = (),
        planned: bool = True,
    ) -> Item:
        """One submission, in the plan unless ``planned`` is false."""
        event_id = self.uid(label)
        stamp = (occurred_at or self.cal.at(when)).isoformat()

        def build(story: Story) -> dict[str, Any] | None:
            body = data(story) if callable(data) else data
            if body is None:
                return None
            cause = causation_id(story) if callable(causation_id) else causation_id
            return {
                "event_id": event_id,
                "type": event_type,
                "schema_version": schema_version,
                "occurred_at": stamp,
                "quartier": quartier,
                "aggregate_id": aggregate_id,
                "correlation_id": correlation_id,
                "causation_id": cause,
                "data": body,
            }

        item = Item(
            when, len(self.items), label, source, event_type, build, refusal, tolerate, [*instead]
        )
        if planned:
            self.items.append(item)
        return item

    # the year --------------------------------------------------------------

    def plan(self) -> list[Item]:
        for qi, quartier in enumerate(self.quartiers):
            self.plan_quartier(qi, quartier)
        self.plan_bad_submissions()
        return sorted(self.items, key=lambda i: (i.when.key, i.order))

    def plan_quartier(self, qi: int, q: str) -> None:
        rng = self.rng
        amount, cap, funders = ENVELOPES[qi % len(ENVELOPES)]
        env = envelope_id(self.year, q)
        top_ups = [  # if the envelope is open already (another seed): bring the money anyway
            self.add(
                f"{q}:envelope:top-up-instead:{funder}",
                CITY,
                "EnvelopeToppedUp",
                When(8 + qi, 10, 1 + n),
                q,
                env,
                {"amount_cents": cents, "funder": funder},
                planned=False,
            )
            for n, (funder, cents) in enumerate(funders)
        ]
        self.add(
            f"{q}:envelope",
            CITY,
            "EnvelopeOpened",
            When(8 + qi, 10),
            q,
            env,
            {
                "year": self.year,
                "amount_cents": amount,
                "cap_per_project_cents": cap,
                "funders": [{"funder": f, "amount_cents": c} for f, c in funders],
            },
            tolerate=frozenset({"already_exists"}),
            instead=top_ups,
        )
        if qi == TOP_UP[0]:
            _, day, cents, funder = TOP_UP
            self.add(
                f"{q}:envelope:top-up",
                CITY,
                "EnvelopeToppedUp",
                When(day, 11),
                q,
                env,
                {"amount_cents": cents, "funder": funder},
            )
        partners = PARTNERS_BY_QUARTIER[qi % len(PARTNERS_BY_QUARTIER)]
        ideas = rng.sample(IDEAS, 7)
        scripts: list[Callable[[ProjectPlan, int], None]] = [
            self.script_funded,
            self.script_several_envies,
            self.script_rejected_then_resubmitted,
            self.script_deferred,
            self.script_in_progress,
            self.script_emergence,
            [self.script_cap_exceeded, self.script_abandoned, self.script_after_top_up][qi % 3],
        ]
        for pi, (script, (title, theme, envie_texts)) in enumerate(
            zip(scripts, ideas, strict=True)
        ):
            partner = partners[pi % len(partners)]
            pid = self.aggregate("prj", f"{q}:{pi}")
            ideas_of = [(theme, text) for text in envie_texts]
            project = ProjectPlan(pid, self.uid(f"project:{pid}"), q, partner, title, ideas_of)
            self.projects[pid] = project
            script(project, rng.randint(-4, 4))
        self.plan_other_envies(qi, q, partners)

    # people and envies ------------------------------------------------------

    def porteur(self, q: str, partner: str, label: str, day: float) -> str:
        """A resident who carries a project, registered by the partner (pseudonymous id,
        age band and gender only: the partner keeps the identity in its own files)."""
        rng = self.rng
        porteur_id = self.aggregate("por", f"{q}:{label}")
        self.add(
            f"{q}:porteur:{label}",
            partner,
            "PorteurRegistered",
            When(day, 9, rng.choice((0, 15, 30, 45))),
            q,
            porteur_id,
            {
                "age_band": rng.choice(("16_25", "16_25", "26_59", "26_59", "26_59", "60_plus")),
                "gender": rng.choice(("femme", "femme", "homme", "homme", "non_renseigne")),
            },
        )
        return porteur_id

    def envie(
        self,
        q: str,
        partner: str,
        label: str,
        day: float,
        theme: str,
        summary: str,
        porteur_id: str | None = None,
    ) -> str:
        rng = self.rng
        envie_id = self.aggregate("env", f"{q}:{label}")
        channel = rng.choice(CHANNELS_BY_PARTNER[partner])
        data: dict[str, Any] = {
            "channel": channel,
            "theme": theme,
            "summary": summary,
            "porteur_id": porteur_id,
            "wants_to_carry": porteur_id is not None or rng.random() < 0.3,
        }
        version = 1
        if partner != CC:  # conseil-citoyen's software still sends schema 1 (no place)
            data["place"] = PLACES[channel]
            version = 2
        self.add(
            f"{q}:envie:{label}",
            partner,
            "EnvieRecorded",
            When(day, rng.randint(10, 19), rng.choice((0, 10, 20, 30, 40, 50))),
            q,
            envie_id,
            data,
            schema_version=version,
        )
        return envie_id

    def plan_other_envies(self, qi: int, q: str, partners: Sequence[str]) -> None:
        """The envies that did not become projects (yet): every theme, all year long."""
        rng = self.rng
        themes = list(ENVIES_BY_THEME)
        count = rng.randint(22, 28)
        days = sorted(rng.uniform(3, 355) for _ in range(count))
        for i, day in enumerate(days):
            theme = themes[(i + qi) % len(themes)] if i < len(themes) else rng.choice(themes)
            partner = partners[i % len(partners)]
            summary = rng.choice(ENVIES_BY_THEME[theme])
            envie_id = self.envie(q, partner, f"other-{i}", day, theme, summary)
            if i == 5:  # recorded twice (two permanences): the second is closed as a duplicate
                dup = self.envie(q, partner, f"other-{i}-again", day + 1, theme, summary)
                self.add(
                    f"{q}:envie:other-{i}-again:closed",
                    partner,
                    "EnvieClosed",
                    When(day + 8, 10),
                    q,
                    dup,
                    {"reason": "duplicate"},
                )
                if "duplicate_envie" not in self.interesting:
                    self.interesting["duplicate_envie"] = dup
                    self.interesting["duplicate_envie_quartier"] = q
                    self.interesting["duplicate_envie_partner"] = partner
            if i == 9 and qi == 1:  # a streetlight: the city's services, not the FPH
                self.add(
                    f"{q}:envie:other-{i}:closed",
                    partner,
                    "EnvieClosed",
                    When(day + 6, 15),
                    q,
                    envie_id,
                    {"reason": "redirected"},
                )

    # project steps ---------------------------------------------------------

    def accompany(
        self,
        p: ProjectPlan,
        day: float,
        stage: str,
        new_envies: int,
        new_porteurs: int,
        step: str = "accompanied",
    ) -> None:
        """The partner accompanies the project (again: adds envies, porteurs, a stage).
        Each new envie was expressed some weeks before; a resident who wants to carry it
        is registered as a porteur the same day."""
        rng = self.rng
        for n in range(max(new_envies, new_porteurs)):
            expressed = max(1, day - 10 - rng.randint(0, 25))
            carrier = None
            if n < new_porteurs:
                label = f"{p.project_id}-{len(p.porteurs)}"
                carrier = self.porteur(p.quartier, p.partner, label, expressed)
                p.porteurs.append(carrier)
            if n < new_envies:
                theme, text = p.ideas[len(p.envies) % len(p.ideas)]
                label = f"{p.project_id}-{len(p.envies)}"
                envie = self.envie(p.quartier, p.partner, label, expressed, theme, text, carrier)
                p.envies.append(envie)
        self.add(
            f"{p.project_id}:{step}",
            p.partner,
            "ProjectAccompanied",
            When(day, rng.randint(14, 18)),
            p.quartier,
            p.project_id,
            {
                "title": p.title,
                "envie_ids": list(p.envies),
                "porteur_ids": list(p.porteurs),
                "partner": p.partner,
                "stage": stage,
            },
            correlation_id=p.correlation_id,
        )

    def submit(self, p: ProjectPlan, day: float, requested: int, step: str = "submitted") -> None:
        rng = self.rng
        p.requested = requested
        p.expected_participants = p.expected_participants or rng.randint(25, 90)
        co_funding = []
        if rng.random() < 0.4:
            co_funding = [{"funder": "CAF", "amount_cents": rng.randint(5, 30) * 1000}]
        p.submission_id = self.uid(f"{p.project_id}:{step}")
        self.add(
            f"{p.project_id}:{step}",
            p.partner,
            "ProjectSubmitted",
            When(day, rng.randint(10, 17)),
            p.quartier,
            p.project_id,
            {
                "amount_requested_cents": requested,
                "expected_participants": p.expected_participants,
                "co_funding": co_funding,
            },
            correlation_id=p.correlation_id,
        )

    def decide(
        self,
        p: ProjectPlan,
        session: int,
        decision: str,
        amount: int = 0,
        expect: str = "GrantAwarded",
        step: str = "decided",
    ) -> str:
        """A committee decision at ``session``; its label."""
        rng = self.rng
        members = rng.randint(7, 12)
        residents = members // 2 + 1 + rng.randint(0, 2)
        majority = rng.randint(members // 2 + 1, members)
        rest = members - majority
        split = rng.randint(0, rest)
        if decision == "approved":
            votes = {"for": majority, "against": split, "abstain": rest - split}
        elif decision == "rejected":
            votes = {"for": split, "against": majority, "abstain": rest - split}
        else:
            votes = {"for": split, "against": rest - split, "abstain": majority}
        label = f"{p.project_id}:{step}"
        qi = self.quartiers.index(p.quartier)
        event_id = self.uid(label)
        self.add(
            label,
            CITY,
            "CommitteeDecided",
            When(SESSION_DAYS[session], 18, 15 * qi),
            p.quartier,
            p.project_id,
            {
                "decision": decision,
                "amount_approved_cents": amount if decision == "approved" else 0,
                "votes": votes,
                "members_present": members,
                "residents_present": min(residents, members),
            },
            correlation_id=p.correlation_id,
            causation_id=p.submission_id,
        )
        if decision == "approved":
            self.decisions[label] = Decision(
                label, event_id, p.quartier, p.project_id, amount, expect
            )
            if expect == "GrantAwarded":
                p.award_label, p.award_cents, p.paid_cents = label, amount, 0
        return label

    def approve(self, p: ProjectPlan, session: int, step: str = "decided") -> None:
        """Approved for 80-100 % of the request (whole tens of euros)."""
        amount = min(p.requested, int(p.requested * self.rng.uniform(0.8, 1.0)) // 1000 * 1000)
        self.decide(p, session, "approved", amount, step=step)

    def pay(self, p: ProjectPlan, day: float, cents: int, step: str = "paid") -> None:
        award = p.award_label
        assert award is not None
        p.paid_cents += cents
        self.add(
            f"{p.project_id}:{step}",
            CITY,
            "GrantPaid",
            When(day, 11),
            p.quartier,
            envelope_id(self.year, p.quartier),
            lambda story: _grant_data(story, award, {"amount_cents": cents}),
            correlation_id=p.correlation_id,
            causation_id=lambda story: _answer_id(story, award),
        )

    def settle(self, p: ProjectPlan, day: float, returned: int) -> None:
        award = p.award_label
        assert award is not None
        spent = p.paid_cents - returned
        self.add(
            f"{p.project_id}:settled",
            CITY,
            "GrantSettled",
            When(day, 11),
            p.quartier,
            envelope_id(self.year, p.quartier),
            lambda story: _grant_data(
                story, award, {"spent_cents": spent, "returned_cents": returned}
            ),
            correlation_id=p.correlation_id,
            causation_id=lambda story: _answer_id(story, award),
        )

    def complete(
        self, p: ProjectPlan, day: float, outcome: str, participants: int, step: str = "completed"
    ) -> None:
        self.add(
            f"{p.project_id}:{step}",
            p.partner,
            "ProjectCompleted",
            When(day, 17),
            p.quartier,
            p.project_id,
            {"outcome": outcome, "participants": participants},
            correlation_id=p.correlation_id,
        )

    def survey(self, p: ProjectPlan, day: float, participants: int) -> None:
        """The impact survey among participants, and how they were mobilised."""
        rng = self.rng
        answers = max(3, int(participants * rng.uniform(0.4, 0.8)))
        weights = (1, 2, 5, 9, 8)
        levels = rng.choices(("1", "2", "3", "4", "5"), weights=weights, k=answers)
        scores = dict(sorted(Counter(levels).items()))
        self.add(
            f"{p.project_id}:impact",
            p.partner,
            "ImpactAssessed",
            When(day, 10),
            p.quartier,
            p.project_id,
            {"scores": scores},
            correlation_id=p.correlation_id,
        )
        mechanisms = rng.sample(MECHANISMS_BY_PARTNER[p.partner], rng.randint(1, 3))
        self.add(
            f"{p.project_id}:mobilisation",
            p.partner,
            "MobilisationRecorded",
            When(day, 10, 30),
            p.quartier,
            p.project_id,
            {"mechanisms": mechanisms},
            correlation_id=p.correlation_id,
        )

    def participants(self, p: ProjectPlan, low: float = 0.7, high: float = 1.3) -> int:
        return max(1, int(p.expected_participants * self.rng.uniform(low, high)))

    # the projects' stories ----------------------------------------------------

    def script_funded(self, p: ProjectPlan, j: int) -> None:
        """Accompanied, approved at the first committee, paid, achieved, money returned."""
        rng = self.rng
        self.accompany(p, 20 + j, "emergence", 1, 1)
        self.submit(p, 38 + j, rng.randint(8, 15) * 10_000)
        self.approve(p, 0)
        self.pay(p, 62 + j, p.award_cents)
        n = self.participants(p)
        self.complete(p, 150 + j, "achieved", n)
        self.survey(p, 152 + j, n)
        self.settle(p, 170 + j, rng.randint(1, 5) * 1000)

    def script_several_envies(self, p: ProjectPlan, j: int) -> None:
        """From two envies and two porteurs; a third of each joins later; two payments."""
        rng = self.rng
        self.accompany(p, 30 + j, "emergence", 2, 2)
        self.accompany(p, 75 + j, "montage", 1, 1, step="accompanied-again")
        self.interesting.setdefault("several", p.project_id)
        self.submit(p, 90 + j, rng.randint(15, 25) * 10_000)
        self.approve(p, 1)
        first = p.award_cents * 6 // 10
        self.pay(p, 115 + j, first, step="paid-1")
        self.pay(p, 200 + j, p.award_cents - first, step="paid-2")
        n = self.participants(p)
        self.complete(p, 230 + j, "achieved", n)
        self.survey(p, 232 + j, n)
        self.settle(p, 245 + j, 0)

    def script_rejected_then_resubmitted(self, p: ProjectPlan, j: int) -> None:
        """Rejected, resubmitted smaller, approved; completed 'partial', then corrected to
        'achieved' (the later completion supersedes)."""
        rng = self.rng
        self.accompany(p, 45 + j, "montage", 1, 1)
        self.submit(p, 95 + j, rng.randint(16, 22) * 10_000)
        self.decide(p, 1, "rejected")
        self.submit(p, 135 + j, rng.randint(9, 14) * 10_000, step="resubmitted")
        self.approve(p, 2, step="decided-again")
        self.pay(p, 170 + j, p.award_cents)
        self.complete(p, 255 + j, "partial", self.participants(p, 0.4, 0.6))
        n = self.participants(p)
        self.complete(p, 280 + j, "achieved", n, step="completed-again")
        self.interesting.setdefault("completed_twice", p.project_id)
        self.survey(p, 282 + j, n)

    def script_deferred(self, p: ProjectPlan, j: int) -> None:
        """Deferred at one committee (a quote missing), approved at the next one."""
        rng = self.rng
        self.accompany(p, 80 + j, "montage", 2, 2)
        self.submit(p, 98 + j, rng.randint(6, 12) * 10_000)
        self.decide(p, 1, "deferred")
        self.approve(p, 2, step="decided-again")
        self.pay(p, 172 + j, p.award_cents)
        n = self.participants(p)
        self.complete(p, 300 + j, "achieved", n)
        self.survey(p, 302 + j, n)

    def script_in_progress(self, p: ProjectPlan, j: int) -> None:
        """Approved in the spring, half paid, being carried out."""
        rng = self.rng
        self.accompany(p, 180 + j, "emergence", 1, 1)
        self.submit(p, 200 + j, rng.randint(10, 20) * 10_000)
        self.approve(p, 3)
        self.pay(p, 222 + j, p.award_cents // 2)
        self.accompany(p, 240 + j, "realisation", 0, 0, step="accompanied-again")
        self.interesting.setdefault("in_progress", p.project_id)

    def script_emergence(self, p: ProjectPlan, j: int) -> None:
        """A project just born, not submitted yet."""
        self.accompany(p, 300 + j, "emergence", 1, 1)
        self.interesting.setdefault("emergence", p.project_id)

    def script_cap_exceeded(self, p: ProjectPlan, j: int) -> None:
        """Approved above the envelope's cap per project: funding refuses (cap_exceeded);
        resubmitted within the cap, approved, funded, achieved."""
        self.accompany(p, 150 + j, "montage", 1, 2)
        self.submit(p, 190 + j, 400_000)
        self.decide(p, 3, "approved", 350_000, expect="GrantRefused (cap_exceeded)")
        self.submit(p, 235 + j, 280_000, step="resubmitted")
        self.decide(p, 4, "approved", 250_000, step="decided-again")
        self.pay(p, 275 + j, 250_000)
        n = self.participants(p)
        self.complete(p, 340 + j, "achieved", n)
        self.survey(p, 342 + j, n)
        self.interesting.setdefault("cap_exceeded", p.project_id)

    def script_abandoned(self, p: ProjectPlan, j: int) -> None:
        """Approved and half paid, then abandoned: what was not spent goes back."""
        rng = self.rng
        self.accompany(p, 120 + j, "emergence", 1, 1)
        self.submit(p, 150 + j, rng.randint(8, 15) * 10_000)
        self.approve(p, 2)
        self.pay(p, 170 + j, p.award_cents // 2)
        self.complete(p, 260 + j, "abandoned", self.participants(p, 0.1, 0.2))
        self.settle(p, 265 + j, p.paid_cents // 2)

    def script_after_top_up(self, p: ProjectPlan, j: int) -> None:
        """Approved after the envelope was topped up."""
        rng = self.rng
        self.accompany(p, 225 + j, "montage", 1, 1)
        self.submit(p, 255 + j, rng.randint(10, 20) * 10_000)
        self.approve(p, 4)
        self.pay(p, 276 + j, p.award_cents)
        n = self.participants(p)
        self.complete(p, 345 + j, "achieved", n)
        self.survey(p, 346 + j, n)

    # deliberate mistakes --------------------------------------------------------

    def plan_bad_submissions(self) -> None:
        """Submissions that break a rule: each is refused with every reason."""
        q1 = self.quartiers[0]
        q2 = self.quartiers[1]
        self.add(
            "bad:envie-unknown-quartier",
            CC,
            "EnvieRecorded",
            When(100, 15),
            "QN00000X",
            self.aggregate("env", "bad:unknown-quartier"),
            {
                "channel": "en_ligne",
                "theme": "meteo",
                "summary": "Un abri pour attendre le bus",
                "porteur_id": None,
                "wants_to_carry": False,
            },
            refusal="an envie in an unknown quartier, with a theme that does not exist",
        )
        self.add(
            "bad:envie-in-the-future",
            CSN,
            "EnvieRecorded",
            When(362, 9),
            q1,
            self.aggregate("env", "bad:future"),
            {
                "channel": "centre_social",
                "theme": "culture",
                "summary": "Un bal pour la fête de fin d'année",
                "porteur_id": None,
                "wants_to_carry": True,
            },
            occurred_at=(self.now + timedelta(days=7)).astimezone(self.cal.tz),
            refusal="an envie dated next week (more than 5 minutes in the future)",
        )
        self.add(
            "bad:grant-by-a-partner",
            CSN,
            "GrantAwarded",
            When(120, 9),
            q1,
            envelope_id(self.year, q1),
            {"grant_id": "g-by-hand", "project_id": "prj-by-hand", "amount_cents": 100_000},
            refusal="a partner writing a grant itself (only funding answers committee decisions)",
        )
        partner = self.interesting["duplicate_envie_partner"]
        self.add(
            "bad:project-from-a-duplicate",
            partner,
            "ProjectAccompanied",
            When(130, 16),
            self.interesting["duplicate_envie_quartier"],
            self.aggregate("prj", "bad:from-duplicate"),
            {
                "title": "Projet sur une envie en double",
                "envie_ids": [self.interesting["duplicate_envie"]],
                "porteur_ids": [self.aggregate("por", "bad:never-registered")],
                "partner": partner,
                "stage": "emergence",
            },
            refusal="a project from an envie closed as a duplicate, with an unregistered porteur",
        )
        # Before the committee approves the project in progress (q1), two wrong decisions.
        in_progress = self.projects[self.interesting["in_progress"]]
        session = SESSION_DAYS[3]
        self.add(
            "bad:decision-votes-do-not-add-up",
            CITY,
            "CommitteeDecided",
            When(session, 17, 50),
            q1,
            in_progress.project_id,
            {
                "decision": "approved",
                "amount_approved_cents": 50_000,
                "votes": {"for": 5, "against": 1, "abstain": 0},
                "members_present": 7,
                "residents_present": 4,
            },
            correlation_id=in_progress.correlation_id,
            refusal="a committee decision whose votes do not add up to the members present",
        )
        self.add(
            "bad:decision-above-request-without-residents",
            CITY,
            "CommitteeDecided",
            When(session, 17, 55),
            q1,
            in_progress.project_id,
            {
                "decision": "approved",
                "amount_approved_cents": in_progress.requested + 500_000,
                "votes": {"for": 6, "against": 0, "abstain": 1},
                "members_present": 7,
                "residents_present": 3,
            },
            correlation_id=in_progress.correlation_id,
            refusal="an approval above the amount requested, residents not a majority",
        )
        emergence = self.projects[self.interesting["emergence"]]
        self.add(
            "bad:completed-without-grant",
            emergence.partner,
            "ProjectCompleted",
            When(330, 17),
            emergence.quartier,
            emergence.project_id,
            {"outcome": "achieved", "participants": 12},
            correlation_id=emergence.correlation_id,
            refusal="a completion of a project that has no grant (not even submitted)",
        )
        award = next(d for d in self.decisions.values() if d.quartier == q2)
        self.add(
            "bad:payment-above-award",
            CITY,
            "GrantPaid",
            When(SESSION_DAYS[0] + 30, 11),
            q2,
            envelope_id(self.year, q2),
            lambda story: _grant_data(story, award.label, {"amount_cents": 20_000}),
            refusal="a payment above the grant awarded (it was paid in full already)",
        )


def _answer_id(story: Story, decision_label: str) -> str | None:
    answer = story.answers.get(decision_label)
    return answer.event_id if answer else None


def _grant_data(story: Story, decision_label: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """``data`` with the grant id funding gave the decision; None if it gave none."""
    answer = story.answers.get(decision_label)
    if answer is None or answer.type != "GrantAwarded":
        return None
    return {"grant_id": answer.data["grant_id"], **data}


# --- running it -------------------------------------------------------------------


@dataclass
class Tally:
    submitted: int = 0
    tolerated: int = 0
    accepted_new: int = 0
    accepted_again: int = 0
    refused_as_planned: int = 0
    problems: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)


class Demo:
    def __init__(
        self,
        nc: NATS,
        items: list[Item],
        planner: Planner,
        start_seq: int,
        out: Callable[[str], None],
    ) -> None:
        self.nc = nc
        self.items = items
        self.planner = planner
        self.start_seq = start_seq
        self.out = out
        self.story = Story()
        self.tally = Tally()
        self.log = EventLog(nc.jetstream())
        self.clients: dict[str, SubmitClient] = {}
        self.details: list[str] = []  # printed under the current chapter's line

    async def client(self, source: str) -> SubmitClient:
        if source not in self.clients:
            client = SubmitClient(self.nc, source)
            await client.start()
            self.clients[source] = client
        return self.clients[source]

    async def run(self) -> None:
        """Chapter by chapter (a committee session ends each), in the year's order."""
        cal = self.planner.cal
        done = 0
        for k in range(len(SESSION_DAYS) + 1):
            last = SESSION_DAYS[k] + 1 if k < len(SESSION_DAYS) else 366
            chapter = [i for i in self.items[done:] if i.when.key < last]
            done += len(chapter)
            if k < len(SESSION_DAYS):
                name = f"to committee {k + 1} ({cal.at(When(SESSION_DAYS[k], 18)).date()})"
            else:
                name = f"to the end ({cal.at(When(364, 18)).date()})"
            decisions = await self.submit_chapter(name, chapter)
            if decisions:
                await self.await_answers(decisions)

    async def submit_chapter(self, name: str, chapter: list[Item]) -> list[Decision]:
        """Submit the chapter's items in order, pipelining each run of submissions to one
        service (the next run waits for their receipts: it may depend on them); the
        approved decisions accepted, which funding will answer."""
        counts: Counter[str] = Counter()
        accepted = refused = 0
        decisions: list[Decision] = []
        run: list[Item] = []

        async def flush() -> None:
            nonlocal accepted, refused
            instead: list[Item] = []
            sent: list[tuple[Item, SubmitClient, int]] = []
            for item in run:
                event = item.build(self.story)
                if event is None:
                    self.problem(f"{item.label}: not submitted, its decision has no grant")
                    continue
                client = await self.client(item.source)
                payload = json.dumps(event, ensure_ascii=False).encode()
                sent.append((item, client, await client.publish(item.type, payload)))
            receipts = await asyncio.gather(
                *(client.receipt(seq, RECEIPT_TIMEOUT) for _, client, seq in sent)
            )
            for (item, _, _), receipt in zip(sent, receipts, strict=True):
                counts[item.type] += 1
                verdict = self.judge(item, receipt)
                if verdict == "accepted":
                    accepted += 1
                    decision = self.planner.decisions.get(item.label)
                    if decision is not None:
                        decisions.append(decision)
                else:
                    refused += 1
                if verdict == "tolerated":
                    instead += item.instead
            run.clear()
            if instead:
                run.extend(instead)
                await flush()

        for item in chapter:
            if run and item.owner != run[-1].owner:
                await flush()
            run.append(item)
        await flush()
        kinds = ", ".join(f"{n} {t}" for t, n in counts.most_common())
        self.out(
            f"{name}: {sum(counts.values())} submitted, {accepted} accepted, {refused}"
            f" refused ({kinds})"
        )
        for line in self.details:
            self.out(line)
        self.details.clear()
        return decisions

    def judge(self, item: Item, receipt: Receipt) -> str:
        """Count the receipt, note refusals: accepted, tolerated (a refusal that does not
        matter), refused (as planned, or a problem)."""
        self.tally.submitted += 1
        if receipt.ok:
            assert receipt.seq is not None
            if receipt.seq > self.start_seq:
                self.tally.accepted_new += 1
            else:
                self.tally.accepted_again += 1
            if item.refusal is not None:
                self.problem(f"{item.label}: accepted at seq {receipt.seq}, should be refused")
            return "accepted"
        errors = receipt.error_dicts()
        if item.refusal is None and {e.get("code") for e in errors} <= item.tolerate:
            self.tally.tolerated += 1
            then = f": {len(item.instead)} {item.instead[0].type} instead" if item.instead else ""
            self.details.append(f"  note: {item.type} refused ({errors[0]['message']}){then}")
            return "tolerated"
        if item.refusal is not None:
            self.tally.refused_as_planned += 1
            self.details.append(f"  refused, as it should be: {item.refusal} ({item.source}):")
        else:
            self.problem(f"{item.label} ({item.source}, {item.type}) refused:")
        for e in errors:
            self.details.append(f"      {e['field']}: {e['message']}")
        return "refused"

    def problem(self, text: str) -> None:
        self.tally.problems.append(text)
        self.details.append(f"  PROBLEM: {text}")

    async def await_answers(self, decisions: list[Decision]) -> None:
        """Wait for funding's answer to each approved decision: read on the envelopes'
        subjects of the log (the answer's causation_id is the decision's event id)."""
        waiting = {d.event_id: d for d in decisions}
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while waiting:
            for quartier in sorted({d.quartier for d in waiting.values()}):
                envelope = envelope_id(self.planner.year, quartier)
                for msg in await self.log.read_aggregate(quartier, "envelope", envelope):
                    doc = json.loads(msg.data)
                    if doc.get("type") not in FUNDING_ONLY:
                        continue
                    decision = waiting.pop(doc.get("causation_id") or "", None)
                    if decision is None:
                        continue
                    answer = Answer(doc["type"], doc["event_id"], doc["data"])
                    self.story.answers[decision.label] = answer
                    self.tally.answers[answer.text] += 1
                    if answer.text != decision.expect:
                        self.problem(
                            f"{decision.label}: funding answered {answer.text},"
                            f" not {decision.expect}"
                        )
            if waiting and time.monotonic() > deadline:
                for d in waiting.values():
                    self.problem(f"{d.label}: no answer from funding after {ANSWER_TIMEOUT}s")
                break
            if waiting:
                await asyncio.sleep(0.1)
        answered = Counter(
            self.story.answers[d.label].text for d in decisions if d.label in self.story.answers
        )
        self.out(
            f"  funding answered the {len(decisions)} approved decision(s): "
            + ", ".join(f"{n} {t}" for t, n in answered.most_common())
        )
        for line in self.details:
            self.out(line)
        self.details.clear()


def _period(year: int) -> str:
    return urlencode({"from": f"{year}-01-01", "to": f"{year + 1}-01-01"})


def summary(
    demo: Demo,
    planner: Planner,
    nats_url: str,
    last_seq: int,
    elapsed: float,
    urls: dict[str, str],
) -> list[str]:
    t = demo.tally
    year = planner.year
    period = _period(year)
    indicators = urls["indicators"]
    accepted = t.accepted_new + t.accepted_again
    answers = ", ".join(f"{n} {a}" for a, n in t.answers.most_common()) or "none"
    tolerated = f", {t.tolerated} refused but harmless" if t.tolerated else ""
    lines = [
        "",
        f"Done in {elapsed:.1f} s: {t.submitted} submissions, {accepted} accepted"
        f" ({t.accepted_new} new in the log, {t.accepted_again} there already),"
        f" {t.refused_as_planned} refused as planned{tolerated}; {len(t.problems)} problem(s).",
        f"Funding's answers to the approved decisions: {answers}.",
        f"The log (FPH_EVENTS) is at seq {last_seq}.",
        "",
        f"Open (the indicators follow within seconds): the fiche's figures for {year}:",
    ]
    for q in planner.quartiers:
        lines.append(f"  {q}   {indicators}/indicators?quartier={q}&{period}")
    lines.append(f"  all quartiers  {indicators}/indicators?{period}")
    q1 = planner.quartiers[0]
    lines += [
        "Where a number comes from (every event behind it):",
        f"  {indicators}/indicators/envies_recueillies/lineage?quartier={q1}&{period}",
        f"  {indicators}/indicators/actions_abouties/lineage?quartier={q1}&{period}",
        "A project's timeline (rejected, resubmitted, funded, completed twice):",
        f"  {urls['review']}/projects/{planner.interesting['completed_twice']}",
        "An envelope's ledger (opened, grants, payments, settlements):",
        f"  {urls['funding']}/envelopes/{envelope_id(year, q1)}",
        "The fiche as CSV:",
        f"  {indicators}/reports/fiche.csv?{period}",
        "",
        "Next, audit it (see .venv/bin/fph-audit --help):",
        f"  .venv/bin/fph-audit replay --nats-url {nats_url} --year {year} --quartier {q1}",
        f"  .venv/bin/fph-audit verify --nats-url {nats_url} --service-url {indicators}",
        "Run `make demo` again: the same events are resubmitted, nothing is added to the log.",
    ]
    return lines


async def run_demo(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    settings = CommonSettings()
    tz = settings.tz
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    year: int = args.year if args.year is not None else today.year
    if year > today.year:
        out(f"fph-demo: {year} is in the future; events must be in the past")
        return 2
    calendar = Calendar(year, tz, today)
    if calendar.days < 1:
        out(f"fph-demo: no day of {year} is over yet; try --year {year - 1}")
        return 2
    quartiers = settings.quartiers[:3]
    if len(quartiers) < 2:
        out("fph-demo: needs at least two quartiers in FPH_QUARTIERS")
        return 2
    planner = Planner(year, args.seed, quartiers, calendar, now)
    items = planner.plan()
    try:
        nc = await nats.connect(
            nats_servers(args.nats_url), connect_timeout=3, max_reconnect_attempts=3
        )
    except Exception as exc:
        out(f"fph-demo: cannot reach NATS at {args.nats_url} ({exc}): is `make run` running?")
        return 1
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(INBOX_STREAM)
        except NotFoundError:
            out(f"fph-demo: no stream {INBOX_STREAM} at {args.nats_url}: start `make run` first")
            return 1
        log = EventLog(js)
        start_seq = await log.last_seq()
        out(
            f"fph-demo: the year {year} in {', '.join(quartiers)} (seed {args.seed}),"
            f" {len(items)} submissions through the inbox of {args.nats_url};"
            f" the log is at seq {start_seq}"
        )
        out(
            f"  sources: {CITY} (envelopes, committee decisions, payments),"
            f" {CSN} and {CC} (envies, porteurs, projects, completions, surveys)"
        )
        if calendar.factor < 1:
            end = calendar.at(When(364, 0)).date()
            note = f" (only a few weeks: try --year {year - 1})" if calendar.days < 60 else ""
            out(f"  {year} is not over: its events are spread from 1 January to {end}{note}")
        started = time.monotonic()
        demo = Demo(nc, items, planner, start_seq, out)
        try:
            await demo.run()
        except ReceiptTimeout as exc:
            out(f"fph-demo: {exc}")
            out("  are the services running (`make run`)?")
            return 1
        last_seq = await log.last_seq()
        urls = {name: getattr(args, f"{name}_url") for name in ("indicators", "review", "funding")}
        for line in summary(
            demo, planner, args.nats_url, last_seq, time.monotonic() - started, urls
        ):
            out(line)
        for client in demo.clients.values():
            await client.close()
        return 1 if demo.tally.problems else 0
    finally:
        await nc.drain()


def _service_url(name: str, port: int) -> str:
    return f"http://127.0.0.1:{os.environ.get(f'FPH_{name.upper()}_PORT', port)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fph-demo",
        description="Fill a running FPH platform (`make run`) with a realistic year for three"
        " quartiers (the first three of FPH_QUARTIERS), submitted through the inbox as the"
        " partners and the city would: envelopes opened and topped up; envies of every channel"
        " and theme (one closed as a duplicate); porteurs; projects accompanied, submitted,"
        " approved, rejected then resubmitted, deferred; the funding service's grants (one"
        " refused for cap_exceeded); payments and settlements; completions (one superseded);"
        " impact surveys and mobilisation; and a few deliberately bad submissions, refused with"
        " their reasons. Afterwards every indicator of every quartier is filled for the year;"
        " the demo prints the URLs to open. Deterministic: the same seed and year submit the"
        " same events (UUID v5 ids), so running it again adds nothing to the log.",
    )
    parser.add_argument(
        "--nats-url",
        default=DEFAULT_NATS_URL,
        help=f"NATS of the running system (default {DEFAULT_NATS_URL}, fph-run's)",
    )
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="the year to fill (default: the current year in FPH_TIMEZONE, Europe/Paris; its"
        " events are then spread from 1 January to yesterday)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="another seed is another year of envies and projects, with other ids (default 1)",
    )
    for name, port in (("indicators", 8004), ("review", 8002), ("funding", 8003)):
        default = _service_url(name, port)
        parser.add_argument(
            f"--{name}-url",
            default=default,
            help=f"the {name} service, only for the links printed (default {default})",
        )
    args = parser.parse_args(argv)
    code = asyncio.run(run_demo(args, lambda line: print(line, flush=True)))
    sys.exit(code)


if __name__ == "__main__":
    main()
