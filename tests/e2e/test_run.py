"""End to end: `fph-run` (what `make run` starts) and the README's example against it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.running_system import ROOT, running_system


def walk_a_project(intake: str, review: str, funding: str) -> dict:
    """The README's desk walk: envelope, envie, porteur, project, submission, approval,
    funding's answer, completion; returns the project with its timeline."""

    def post(url: str, body: dict) -> httpx.Response:
        return httpx.post(url, json=body, timeout=30)

    r = post(
        f"{funding}/envelopes",
        {
            "quartier": "QN09301M",
            "year": 2026,
            "amount_cents": 1500000,
            "cap_per_project_cents": 300000,
            "occurred_at": "2026-01-05T09:00:00+01:00",
            "funders": [
                {"funder": "Ville", "amount_cents": 1000000},
                {"funder": "Etat", "amount_cents": 500000},
            ],
        },
    )
    assert r.status_code == 201, r.text
    envie = post(
        f"{intake}/envies",
        {
            "quartier": "QN09301M",
            "channel": "centre_social",
            "theme": "jeunesse",
            "summary": "Un atelier vélo",
            "occurred_at": "2026-02-01T10:00:00+01:00",
        },
    ).json()
    porteur = post(
        f"{intake}/porteurs",
        {
            "quartier": "QN09301M",
            "age_band": "16_25",
            "gender": "femme",
            "name": "Awa",
            "contact": "06",
        },
    ).json()
    r = post(
        f"{review}/projects",
        {
            "quartier": "QN09301M",
            "title": "Atelier vélo",
            "envie_ids": [envie["aggregate_id"]],
            "porteur_ids": [porteur["aggregate_id"]],
            "partner": "centre-social-nord",
            "occurred_at": "2026-02-10T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    project = r.json()["aggregate_id"]
    r = post(
        f"{review}/projects/{project}/submission",
        {
            "amount_requested_cents": 150000,
            "expected_participants": 40,
            "occurred_at": "2026-02-15T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    r = post(
        f"{review}/projects/{project}/decision",
        {
            "decision": "approved",
            "amount_approved_cents": 120000,
            "votes": {"for": 5, "against": 1, "abstain": 1},
            "members_present": 7,
            "residents_present": 4,
            "occurred_at": "2026-03-01T18:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    while httpx.get(f"{review}/projects/{project}").json()["state"] != "funded":
        assert time.monotonic() < deadline, "no grant 30 s after the approval"
        time.sleep(0.05)
    r = post(
        f"{review}/projects/{project}/completion",
        {"outcome": "achieved", "participants": 35, "occurred_at": "2026-06-20T18:00:00+02:00"},
    )
    assert r.status_code == 201, r.text
    ledger = httpx.get(f"{funding}/envelopes/FPH-2026-QN09301M").json()
    assert ledger["awarded_cents"] == 120000 and ledger["remaining_cents"] == 1380000
    project_page: dict = httpx.get(f"{review}/projects/{project}").json()
    return project_page


def test_the_runner_starts_everything_and_the_readme_example_works(tmp_path: Path) -> None:
    with running_system(tmp_path, defaults=False) as system:
        intake_port, review_port, funding_port = (
            system.urls[name].rsplit(":", 1)[1] for name in ("intake", "review", "funding")
        )
        nats_port = system.nats_url.rsplit(":", 1)[1]
        env, log = system.env, system.log
        text = log.read_text()
        assert f"http://127.0.0.1:{intake_port}/docs" in text
        assert httpx.get(f"http://127.0.0.1:{intake_port}/health").status_code == 200

        example = subprocess.run(
            [sys.executable, "examples/submit_envie.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "FPH_NATS_URL": f"nats://127.0.0.1:{nats_port}", "PYTHONPATH": str(ROOT)},
        )
        assert example.returncode == 0, example.stderr
        good, bad = example.stdout.splitlines()
        assert "'status': 'accepted'" in good and "'seq': 1" in good
        assert "'status': 'rejected'" in bad
        assert "'field': 'quartier'" in bad and "'field': 'data.theme'" in bad

        project = walk_a_project(
            f"http://127.0.0.1:{intake_port}",
            f"http://127.0.0.1:{review_port}",
            f"http://127.0.0.1:{funding_port}",
        )
        assert project["state"] == "completed"
        assert [(t["type"], t["source"]) for t in project["timeline"]] == [
            ("EnvieRecorded", "city"),
            ("ProjectAccompanied", "city"),
            ("ProjectSubmitted", "city"),
            ("CommitteeDecided", "city"),
            ("GrantAwarded", "funding"),
            ("ProjectCompleted", "city"),
        ]
