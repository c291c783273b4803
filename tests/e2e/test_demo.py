"""End to end: `fph-demo` (`make demo`) against `fph-run` (`make run`) fills every indicator
of its three quartiers; a figure's lineage adds up, the CSV has every quartier and the
digest, `fph-audit replay` and `verify` find the same digest ("identical"); a second run
of the demo adds nothing to the log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import nats

from shared.log import EventLog
from tests.running_system import ROOT, RunningSystem, running_system

QUARTIERS = ("QN09301M", "QN09302M", "QN09303M")


def demo_year() -> int | None:
    """The demo's default (the current year), unless it is too young to hold a year's
    story (its events are compressed into the days gone by): then the last one."""
    today = datetime.now(UTC).astimezone(ZoneInfo("Europe/Paris")).date()
    return None if today.timetuple().tm_yday > 60 else today.year - 1


def last_seq(nats_url: str) -> int:
    async def read() -> int:
        nc = await nats.connect(nats_url)
        try:
            return await EventLog(nc.jetstream()).last_seq()
        finally:
            await nc.drain()

    return asyncio.run(read())


def test_the_demo_fills_every_indicator_and_runs_twice(tmp_path: Path) -> None:
    with running_system(tmp_path) as system:
        walk_the_demo(system)


def walk_the_demo(system: RunningSystem) -> None:
    env, nats_url = system.env, system.nats_url
    indicators = system.urls["indicators"]
    year = demo_year()
    command = [str(Path(sys.executable).parent / "fph-demo"), "--nats-url", nats_url]
    if year is not None:
        command += ["--year", str(year)]
    year = year or datetime.now(UTC).astimezone(ZoneInfo("Europe/Paris")).year

    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
        )

    first = demo()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "0 problem(s)" in first.stdout, first.stdout
    assert "refused, as it should be" in first.stdout
    assert "1 GrantRefused (cap_exceeded)" in first.stdout
    assert f"{indicators}/indicators?quartier=QN09301M&from={year}-01-01" in first.stdout
    seq = last_seq(nats_url)
    assert f"The log (FPH_EVENTS) is at seq {seq}." in first.stdout

    deadline = time.monotonic() + 30
    while True:  # the indicators service follows the log
        health = httpx.get(f"{indicators}/health").json()
        if health["log_position"] >= seq:
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    period = {"from": f"{year}-01-01", "to": f"{year + 1}-01-01"}
    for quartier in QUARTIERS:
        answer = httpx.get(f"{indicators}/indicators", params={**period, "quartier": quartier})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["as_of"]["seq"] == seq
        values = {code: item["value"] for code, item in body["indicators"].items()}
        assert len(values) == 12
        mechanisms = values.pop("mecanismes_mobilisation")
        assert any(count > 0 for count in mechanisms.values()), (quartier, mechanisms)
        empty = {code: value for code, value in values.items() if not value}
        assert not empty, (quartier, empty)

    # The walk: a figure's lineage, the CSV, then replay and verify: identical.
    body = httpx.get(f"{indicators}/indicators", params={**period, "quartier": "QN09301M"})
    figure = body.json()["indicators"]["actions_abouties"]
    lineage = httpx.get(figure["lineage"]).json()
    counted = [c for c in lineage["contributions"] if c["status"] == "counted"]
    assert lineage["value"] == figure["value"] == sum(c["contribution"] for c in counted)
    assert any(c["status"] == "superseded" for c in lineage["contributions"])
    csv = httpx.get(f"{indicators}/reports/fiche.csv", params=period)
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    rows = {line.split(",")[0]: line for line in csv.text.splitlines()[1:]}
    assert set(rows) == {*QUARTIERS, "total"}
    digest = body.json()["as_of"]["digest"]
    assert digest in rows["QN09301M"]

    audit = [str(Path(sys.executable).parent / "fph-audit")]
    audit_env = {**env, "FPH_NATS_URL": nats_url}
    replay = subprocess.run(
        [*audit, "replay", "--quiet", "--year", str(year), "--quartier", "QN09301M"],
        capture_output=True, text=True, timeout=120, env=audit_env,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert f"digest at seq {seq}: {digest}" in replay.stdout
    verify = subprocess.run(
        [*audit, "verify", "--quiet", "--service-url", indicators],
        capture_output=True, text=True, timeout=120, env=audit_env,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("identical: ") and digest in verify.stdout

    second = demo()  # the same events again: the same receipts, nothing new in the log
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 new in the log" in second.stdout, second.stdout
    assert last_seq(nats_url) == seq
