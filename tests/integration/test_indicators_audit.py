"""``fph-audit`` as an auditor runs it: a real indicators process, the CLI as a process.

``export`` writes every message (payload bytes exact: the digest recomputed from the
file equals the live one); ``replay`` from the export and from the server gives the
live service's figures and digest; ``verify`` says identical, and finds a divergence
planted in the live store: a lost event (named with its seq), and a digest chain that
differs from a given seq (found by bisection).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext

from services.indicators import store
from shared.codec import event_from_dict
from shared.events import with_recording
from shared.log import EventLog, digest_of
from tests.conftest import NatsServer
from tests.factories import Q1, Q2
from tests.integration.processes import ROOT, ServiceProcess
from tests.integration.test_indicators import hand_built, stream_digest
from tests.integration.test_indicators_processes import burst, wait_position

pytestmark = pytest.mark.anyio


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m services.indicators.audit ARGS`` (what ``fph-audit`` runs)."""
    return subprocess.run(
        [sys.executable, "-m", "services.indicators.audit", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def live_figures(
    client: httpx.AsyncClient, url: str, year: int, as_of: int, quartier: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"from": f"{year}-01-01", "to": f"{year + 1}-01-01"}
    params["as_of_seq"] = as_of
    if quartier:
        params["quartier"] = quartier
    r = await client.get(f"{url}/indicators", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_export_replay_verify(
    nats_srv: NatsServer,
    js: JetStreamContext,
    database_url: str,
    new_database: Callable[[str], str],
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    events = [
        with_recording(event_from_dict(d), source="demo", recorded_at=now) for d in hand_built()
    ]
    events += burst(1500, seed=11)
    results = await EventLog(js).append_many([(e, None) for e in events])
    last = len(results)
    assert await EventLog(js).last_seq() == last

    env = {"FPH_NATS_URL": nats_srv.url, "FPH_QUARTIERS": f"{Q1},{Q2}"}
    live = ServiceProcess(
        "indicators", {**env, "FPH_INDICATORS_DATABASE_URL": database_url}, tmp_path / "i.log"
    )
    live.start()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await wait_position(client, live, last)
            live_digest = await stream_digest(js, last)

            # export: one header line, then one line per message, payloads exact
            export = tmp_path / "log.jsonl"
            done = audit("export", str(export), "--quiet", env=env)
            assert done.returncode == 0, done.stderr
            lines = export.read_text().splitlines()
            assert json.loads(lines[0])["format"] == "fph-events-export/1"
            records = [json.loads(line) for line in lines[1:]]
            assert [r["seq"] for r in records] == list(range(1, last + 1))
            assert all(r["subject"].startswith("fph.events.") for r in records)
            assert {r["headers"]["Nats-Msg-Id"] for r in records[:50]} == {
                str(e.event_id) for e in events[:50]
            }
            assert digest_of(base64.b64decode(r["data"]) for r in records) == live_digest

            # replay, from the export and from the server, into empty stores
            from_file = audit(
                "replay", "--from-export", str(export), "--json", "--quiet",
                "--database-url", new_database("replay_file"), env=env,
            )  # fmt: skip
            from_server = audit("replay", "--json", "--quiet", env=env)  # a temporary SQLite
            for done in (from_file, from_server):
                assert done.returncode == 0, done.stderr
                report = json.loads(done.stdout)
                assert report["as_of"] == {"seq": last, "digest": live_digest}
                assert [p["from"][:4] for p in report["periods"]] == ["2025", "2026", "2027"]
                for period in report["periods"]:
                    year = int(period["from"][:4])
                    body = await live_figures(client, live.url, year, last)
                    assert period["indicators"] == {
                        code: v["value"] for code, v in body["indicators"].items()
                    }
            # the headers of an export are not covered by the digest: the replay takes the
            # type and id from the payload, so a file stripped of them gives the same figures
            stripped = tmp_path / "stripped.jsonl"
            stripped.write_text(
                "\n".join([lines[0], *(json.dumps({**r, "headers": {}}) for r in records)])
            )
            done = audit("replay", "--from-export", str(stripped), "--json", "--quiet", env=env)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == json.loads(from_file.stdout)
            shuffled = tmp_path / "shuffled.jsonl"
            shuffled.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]))
            done = audit("replay", "--from-export", str(shuffled), "--quiet", env=env)
            assert done.returncode != 0 and f"{shuffled}:2: seq 2 after 0" in done.stderr

            # a quartier and a past seq, printed as a table
            past = last // 2
            table = audit("replay", "--quartier", Q2, "--year", "2026", "--as-of-seq",
                          str(past), "--quiet", env=env)  # fmt: skip
            assert table.returncode == 0, table.stderr
            body = await live_figures(client, live.url, 2026, past, Q2)
            assert f"digest at seq {past}: {body['as_of']['digest']}" in table.stdout
            expected = body["indicators"]["envies_recueillies"]["value"]
            assert any(
                line.split() == ["envies_recueillies", str(expected)]
                for line in table.stdout.splitlines()
            ), table.stdout

            # verify: identical, now and as of a past seq
            for extra in ([], ["--as-of-seq", str(past)], ["--from-export", str(export)]):
                done = audit("verify", "--service-url", live.url, "--quiet", *extra, env=env)
                assert done.returncode == 0, done.stdout + done.stderr
                assert done.stdout.startswith("identical: "), done.stdout
                seq = past if extra[:1] == ["--as-of-seq"] else last
                assert f"at seq {seq}" in done.stdout

            # plant a divergence: the live store loses one GrantAwarded of Q1 in 2026
            engine = sa.create_engine(database_url)
            with engine.begin() as conn:
                lost = conn.execute(
                    sa.select(store.grants.c.seq)
                    .where(store.grants.c.quartier == Q1)
                    .where(store.grants.c.local_date >= date(2026, 1, 1))
                    .order_by(store.grants.c.seq)
                    .limit(1)
                ).scalar_one()
                conn.execute(store.grants.delete().where(store.grants.c.seq == lost))
                conn.execute(store.events.delete().where(store.events.c.seq == lost))
            done = audit("verify", "--service-url", live.url, "--quiet", env=env)
            assert done.returncode == 1, done.stdout + done.stderr
            assert done.stdout.startswith(f"DIVERGENT at seq {last}: "), done.stdout
            assert "projets_developpes" in done.stdout or "montant" in done.stdout, done.stdout
            assert f"only in the replay's lineage: seq={lost} type=GrantAwarded" in done.stdout

            # and a live digest chain that differs from seq 700 on
            with engine.begin() as conn:
                conn.execute(
                    store.digests.update()
                    .where(store.digests.c.seq >= 700)
                    .values(digest=b"\x00" * 32)
                )
            engine.dispose()
            done = audit("verify", "--service-url", live.url, "--quiet", env=env)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "digest" in done.stdout.splitlines()[0], done.stdout
            assert "first divergent seq: 700 " in done.stdout, done.stdout
    finally:
        live.stop()


def test_audit_errors_say_what_to_do(tmp_path: Path) -> None:
    """A missing server, a missing file, a used store: a clear message, no traceback."""
    done = audit("replay", "--nats-url", "nats://127.0.0.1:1", "--quiet")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "nats://127.0.0.1:1" in done.stderr

    done = audit("replay", "--from-export", str(tmp_path / "nope.jsonl"), "--quiet")
    assert done.returncode != 0 and "no such export file" in done.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "fph-events-export/1"}\n{"seq": 1}\n')
    done = audit("replay", "--from-export", str(bad), "--quiet")
    assert done.returncode != 0 and f"{bad}:2: not an export record" in done.stderr

    help_text = audit("--help").stdout
    for command in ("export", "replay", "verify"):
        assert command in help_text
