"""Prometheus metrics every service exports, and the ``/metrics`` response."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.responses import Response

from shared.inbox import Outcomes


class ServiceMetrics:
    """Submissions decided and log position of one service process."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.accepted = Counter(
            "fph_submissions_accepted",
            "Submissions accepted and appended to the log, by event type",
            ["service", "type"],
            registry=self.registry,
        )
        self.refused = Counter(
            "fph_submissions_refused",
            "Reasons submissions were refused, by event type and reason code"
            " (one count per reason)",
            ["service", "type", "reason"],
            registry=self.registry,
        )
        self.log_position = Gauge(
            "fph_log_position",
            "Last FPH_EVENTS sequence applied to this service's read models",
            ["service"],
            registry=self.registry,
        )

        self.projects = Gauge(
            "fph_projects",
            "Projects by quartier and workflow state (review's read model, at scrape time)",
            ["quartier", "state"],
            registry=self.registry,
        )

        self.oldest_undecided = Gauge(
            "fph_oldest_undecided_seconds",
            "Per quartier, how long the project waiting longest for a committee decision has"
            " waited since its latest submission (review's read model, at scrape time)",
            ["quartier"],
            registry=self.registry,
        )
        self.decision_target = Gauge(
            "fph_decision_target_seconds",
            "The configured target for a committee decision (FPH_REVIEW_DECISION_TARGET_DAYS)",
            registry=self.registry,
        )

        self.answers = Counter(
            "fph_grant_answers",
            "Funding's answers to approved decisions given by this process, by outcome"
            " (awarded, no_envelope, cap_exceeded, envelope_exhausted)",
            ["outcome"],
            registry=self.registry,
        )
        self.envelope_remaining = Gauge(
            "fph_envelope_remaining_cents",
            "What each FPH envelope can still award (read model, at scrape time)",
            ["envelope", "quartier", "year"],
            registry=self.registry,
        )

    def outcomes(self) -> Outcomes:
        return Outcomes(
            on_accepted=lambda t: self.accepted.labels(self.service, t).inc(),
            on_rejected=lambda t, reason: self.refused.labels(self.service, t, reason).inc(),
        )

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
