"""NATS accounts and permissions (issue 6), on a real nats-server started with the
configuration ``fph-nats-auth`` generates from ``deploy/nats/principals.toml``.

- the committed ``auth.conf`` is current and ``nats-server -t`` accepts it;
- a partner submits with its own credentials and gets its receipt; the logged event's
  ``source`` is its id whatever the body says; it cannot publish to the log or to another
  partner's inbox, read the log or another partner's receipts, create consumers, nor have
  the server write its publish acknowledgements into the log or another inbox;
- the auditor reads the log (a mirror in its account: ordered consumer, direct get,
  ``fph-audit replay``) and can write nothing, not even through a reply subject;
- each service, as its own process with only its own credentials, does its job (no
  permission violation in the server's log), and cannot do another's;
- adding a partner is one entry and one command (and a reload); removing it revokes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError

from services.funding.answers import LEASE_KEY
from shared import nats_auth, nats_server
from shared.client import SubmitClient
from shared.events import envelope_id
from shared.lease import Lease
from shared.log import EventLog, digest_of, provision
from shared.subjects import EVENTS_STREAM, INBOX_STREAM, RECEIPTS_STREAM
from tests import factories
from tests.integration.processes import ROOT, ServiceProcess
from tests.nats_auth_server import PRINCIPALS, AuthServer, prepare

pytestmark = pytest.mark.anyio

Q = "QN09301M"
PARTNER = "centre-social-nord"
OTHER = "conseil-citoyen"
SERVICES = nats_auth.SERVICES
DENIED_WAIT = 2.0


# --- the server and the services --------------------------------------------------------


async def _provision(srv: AuthServer) -> None:
    nc = await nats.connect(srv.url("admin"))
    try:
        assert await provision(nc.jetstream()) == []
        await nats_auth.provision_audit_mirror(nc)
    finally:
        await nc.drain()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """nats-server with the committed principals' accounts; streams and mirror provisioned."""
    server = prepare(tmp_path_factory.mktemp("nats-auth")).start()
    try:
        asyncio.run(_provision(server))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def services(srv: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The four services as processes, each with only its own user in FPH_NATS_URL."""
    data = tmp_path_factory.mktemp("services")
    procs = {
        name: ServiceProcess(
            name,
            {
                "FPH_NATS_URL": srv.url(name),
                f"FPH_{name.upper()}_DATABASE_URL": f"sqlite:///{data / name}.db",
            },
            data / f"{name}.log",
        )
        for name in SERVICES
    }
    try:
        for proc in procs.values():
            proc.start(wait=False)
        for proc in procs.values():
            proc.wait_healthy()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


async def connect(srv: AuthServer, user: str, **options: Any) -> tuple[NATS, list[str]]:
    """A connection as ``user``, and the errors the server sends it (lower case)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(srv.url(user), error_cb=on_error, connect_timeout=5, **options)
    return nc, errors


async def denied(errors: list[str], kind: str, subject: str) -> None:
    """Wait for the server's ``Permissions Violation for <kind> to "<subject>"``."""
    wanted = f'permissions violation for {kind} to "{subject.lower()}"'
    deadline = time.monotonic() + DENIED_WAIT
    while time.monotonic() < deadline:
        if any(wanted in e for e in errors):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no violation {wanted!r}; errors: {errors}")


async def request_denied(errors: list[str], call: Any, subject: str) -> None:
    """A JetStream request whose subject is denied: it never gets an answer."""
    with pytest.raises((NatsTimeout, TimeoutError)):
        await call
    await denied(errors, "publish", subject)


@pytest.fixture
async def admin(srv: AuthServer) -> AsyncIterator[NATS]:
    nc, _ = await connect(srv, "admin")
    yield nc
    await nc.drain()


def service_violations(srv: AuthServer) -> list[str]:
    """Violations by the services' own connections (named ``fph-<service>``), not by the
    tests' deliberate attempts with the services' users."""
    return [
        line
        for line in srv.violations()
        if any(f':fph-{s}" - "FPH/user:{s}"' in line for s in SERVICES)
    ]


def envie(**fields: Any) -> dict[str, Any]:
    return factories.submission("EnvieRecorded", **{"quartier": Q, **fields})


# --- the generated configuration -----------------------------------------------------------


def test_committed_configuration_is_current_and_accepted(srv: AuthServer) -> None:
    """``fph-nats-auth --check`` passes on the committed files; ``nats-server -t`` accepts
    them, and refuses clearly when a password variable is missing."""
    deploy = ROOT / "deploy" / "nats"
    nats_auth.main(
        [
            str(PRINCIPALS),
            "-o",
            str(deploy / "auth.conf"),
            "--env-example",
            str(deploy / "auth.env.example"),
            "--check",
        ]
    )
    assert (srv.directory / "auth.conf").read_text() == (deploy / "auth.conf").read_text()
    checked = srv.check()
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stderr + checked.stdout

    env = {k: v for k, v in srv.env.items() if k != "FPH_NATS_PASSWORD_DEMO"}
    refused = subprocess.run(
        [str(nats_server.binary()), "-t", "-c", str(srv.conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "FPH_NATS_PASSWORD_DEMO" in refused.stderr + refused.stdout


def test_the_auditors_mirror_is_provisioned_once(
    srv: AuthServer, nats_srv: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Again: it is there, nothing changes. On a server without the accounts: a clear no."""
    nats_auth.main(["--provision-audit-mirror", srv.url("admin")])
    assert "exists" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        nats_auth.main(["--provision-audit-mirror", nats_srv.url])
    assert exited.value.code == 1
    assert "no answer from account AUDIT" in capsys.readouterr().err


# --- partners ---------------------------------------------------------------------------------


async def test_partner_submits_as_itself(srv: AuthServer, services: Any, admin: NATS) -> None:
    """With its own user and nothing else: the receipt comes live and by direct get, and
    the logged event's source is the partner, whatever the body claims."""
    async with await SubmitClient.connect(srv.url(PARTNER), source=PARTNER) as client:
        receipt = await client.submit(envie(source="city"), timeout=30)
        assert receipt.ok, receipt
        assert await client.fetch_receipt(receipt.inbox_seq) == receipt
        refused = await client.submit(envie(quartier="QN00000X"), timeout=30)
        assert not refused.ok and refused.errors
    logged = await admin.jetstream().get_msg(EVENTS_STREAM, receipt.seq)
    assert json.loads(logged.data or b"")["source"] == PARTNER


async def test_partner_cannot_reach_beyond_its_own_subjects(
    srv: AuthServer, services: Any, admin: NATS
) -> None:
    nc, errors = await connect(srv, PARTNER)
    js = nc.jetstream(timeout=0.5)
    try:
        await nc.publish(f"fph.events.{Q}.envie.intruder", b"{}")
        await denied(errors, "publish", f"fph.events.{Q}.envie.intruder")
        await request_denied(
            errors,
            js.publish(f"fph.inbox.{OTHER}.EnvieRecorded", json.dumps(envie()).encode()),
            f"fph.inbox.{OTHER}.EnvieRecorded",
        )
        await nc.subscribe("fph.events.>")
        await denied(errors, "subscription", "fph.events.>")
        await nc.subscribe(f"fph.receipts.{OTHER}.>")
        await denied(errors, "subscription", f"fph.receipts.{OTHER}.>")
        await request_denied(
            errors,
            js.subscribe("fph.events.>", stream=EVENTS_STREAM, ordered_consumer=True),
            f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",
        )
        await request_denied(
            errors,
            js.get_last_msg(RECEIPTS_STREAM, f"fph.receipts.{OTHER}.1", direct=True),
            f"$JS.API.DIRECT.GET.{RECEIPTS_STREAM}.fph.receipts.{OTHER}.1",
        )
        await request_denied(
            errors,
            js.get_msg(RECEIPTS_STREAM, 1, direct=True),  # by sequence: any source's
            f"$JS.API.DIRECT.GET.{RECEIPTS_STREAM}",
        )
        await request_denied(
            errors, js.stream_info(EVENTS_STREAM), f"$JS.API.STREAM.INFO.{EVENTS_STREAM}"
        )

        # Its own inbox, but with a reply subject naming the log or another inbox: the
        # server's acknowledgement goes back to the partner's account, never there.
        into_log = f"fph.events.{Q}.envie.redirected-{uuid.uuid4().hex[:8]}"
        into_inbox = f"fph.inbox.{OTHER}.Redirected{uuid.uuid4().hex[:8]}"
        for reply in (into_log, into_inbox):
            await nc.publish(f"fph.inbox.{PARTNER}.EnvieRecorded", b"{}", reply=reply)
        await nc.flush()
        await asyncio.sleep(0.5)
        ajs = admin.jetstream()
        with pytest.raises(NotFoundError):
            await ajs.get_last_msg(EVENTS_STREAM, into_log)
        with pytest.raises(NotFoundError):
            await ajs.get_last_msg(INBOX_STREAM, into_inbox)
        assert nc.is_connected
    finally:
        await nc.close()


# --- the auditor --------------------------------------------------------------------------------


async def test_auditor_reads_the_log_and_writes_nothing(
    srv: AuthServer, services: Any, admin: NATS, tmp_path: Path
) -> None:
    async with await SubmitClient.connect(srv.url(PARTNER), source=PARTNER) as client:
        assert (await client.submit(envie(), timeout=30)).ok
    live = [m async for m in EventLog(admin.jetstream()).read(1)]
    digest = digest_of(m.data for m in live)

    nc, errors = await connect(srv, "auditor")
    js = nc.jetstream(timeout=1.0)
    try:
        deadline = time.monotonic() + 10
        while (await js.stream_info(EVENTS_STREAM)).state.last_seq < len(live):
            assert time.monotonic() < deadline, "the auditors' mirror did not catch up"
            await asyncio.sleep(0.1)
        read = [m async for m in EventLog(js).read(1, until_seq=len(live))]
        assert [m.data for m in read] == [m.data for m in live]
        first = await js.get_msg(EVENTS_STREAM, 1, direct=True)
        assert first.data == live[0].data
        last = await js.get_last_msg(EVENTS_STREAM, live[-1].subject, direct=True)
        assert last.data == live[-1].data

        audit = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.indicators.audit",
                "replay",
                "--nats-url",
                srv.url("auditor"),
                "--database-url",
                f"sqlite:///{tmp_path / 'audit.db'}",
                "--as-of-seq",
                str(len(live)),
            ],
            cwd=ROOT,
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert audit.returncode == 0, audit.stderr
        assert f"digest at seq {len(live)}: {digest}" in audit.stdout

        js = nc.jetstream(timeout=0.5)  # denied requests never get an answer
        await nc.publish("fph.inbox.demo.EnvieRecorded", b"{}")
        await denied(errors, "publish", "fph.inbox.demo.EnvieRecorded")
        await nc.publish(f"fph.events.{Q}.envie.auditor", b"{}")
        await denied(errors, "publish", f"fph.events.{Q}.envie.auditor")
        await request_denied(
            errors,
            js.add_stream(name="AUDIT_NOTES", subjects=["notes.>"]),
            "$JS.API.STREAM.CREATE.AUDIT_NOTES",
        )
        await request_denied(
            errors, js.delete_stream(EVENTS_STREAM), f"$JS.API.STREAM.DELETE.{EVENTS_STREAM}"
        )
        await request_denied(
            errors, js.purge_stream(EVENTS_STREAM), f"$JS.API.STREAM.PURGE.{EVENTS_STREAM}"
        )
        await request_denied(
            errors,
            nc.request(f"$JS.API.STREAM.MSG.DELETE.{EVENTS_STREAM}", b'{"seq": 1}', timeout=0.5),
            f"$JS.API.STREAM.MSG.DELETE.{EVENTS_STREAM}",
        )
        # A direct get whose answer should land in an inbox: it stays in account AUDIT.
        into_inbox = f"fph.inbox.demo.FromAuditor{uuid.uuid4().hex[:8]}"
        await nc.publish(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}", b'{"seq": 1}', reply=into_inbox)
        await nc.flush()
        await asyncio.sleep(0.5)
        with pytest.raises(NotFoundError):
            await admin.jetstream().get_last_msg(INBOX_STREAM, into_inbox)
    finally:
        await nc.close()


# --- the services -------------------------------------------------------------------------------


async def test_each_service_does_its_job_with_its_own_credentials(
    srv: AuthServer, services: Any, admin: NATS
) -> None:
    """Envie and porteur (intake), project (review), envelope (funding's desk), decision
    (review's desk), grant (funding's answer), figures (indicators), refusals by each
    service, the intake desk: all with the services' own users, no violation logged."""
    procs = services
    year = 2026
    async with (
        await SubmitClient.connect(srv.url(PARTNER), source=PARTNER) as partner,
        httpx.AsyncClient(timeout=30) as http,
    ):
        e, p = envie(), factories.submission("PorteurRegistered", quartier=Q)
        assert (await partner.submit(e)).ok
        assert (await partner.submit(p)).ok
        project = uuid.uuid4().hex[:12]
        accompanied = factories.submission(
            "ProjectAccompanied",
            quartier=Q,
            aggregate_id=project,
            data={
                "envie_ids": [e["aggregate_id"]],
                "porteur_ids": [p["aggregate_id"]],
                "partner": PARTNER,
            },
        )
        assert (await partner.submit(accompanied)).ok
        submitted = factories.submission(
            "ProjectSubmitted",
            quartier=Q,
            aggregate_id=project,
            occurred_at=f"{year}-03-02T10:00:00+01:00",
            data={"amount_requested_cents": 150_000},
        )
        assert (await partner.submit(submitted)).ok
        # refusals by review and by funding (their fph.rejected subjects)
        assert not (
            await partner.submit(factories.submission("ProjectSubmitted", aggregate_id="nope"))
        ).ok
        assert not (
            await partner.submit(factories.submission("GrantPaid", aggregate_id="FPH-1-X"))
        ).ok

        envelope = envelope_id(year, Q)
        r = await http.post(
            f"{procs['funding'].url}/envelopes",
            json={
                "quartier": Q,
                "year": year,
                "amount_cents": 1_000_000,
                "cap_per_project_cents": 300_000,
                "funders": [{"funder": "ville", "amount_cents": 1_000_000}],
                "occurred_at": f"{year}-01-05T09:00:00+01:00",
            },
        )
        assert r.status_code == 201, r.text
        r = await http.post(f"{procs['review'].url}/projects/{project}/decision", json={})
        assert r.status_code == 422  # refused by the desk, kept in FPH_REJECTED
        r = await http.post(
            f"{procs['review'].url}/projects/{project}/decision",
            json={
                "decision": "approved",
                "amount_approved_cents": 120_000,
                "votes": {"for": 5, "against": 1, "abstain": 1},
                "members_present": 7,
                "residents_present": 4,
                "occurred_at": f"{year}-03-20T18:00:00+01:00",
            },
        )
        assert r.status_code == 201, r.text
        r = await http.post(
            f"{procs['intake'].url}/envies",
            json={"quartier": Q, "channel": "permanence", "theme": "sport", "summary": "Foot"},
        )
        assert r.status_code == 201, r.text

        js = admin.jetstream()
        deadline = time.monotonic() + 30
        while True:
            try:
                grant = await js.get_last_msg(EVENTS_STREAM, f"fph.events.{Q}.envelope.{envelope}")
                doc = json.loads(grant.data or b"")
                if doc["type"] == "GrantAwarded":
                    break
            except NotFoundError:
                pass
            assert time.monotonic() < deadline, procs["funding"].log()
            await asyncio.sleep(0.2)
        assert doc["source"] == "funding" and doc["data"]["amount_cents"] == 120_000

        end = await EventLog(js).last_seq()
        params = {"quartier": Q, "from": f"{year}-01-01", "to": f"{year + 1}-01-01"}
        while True:
            r = await http.get(f"{procs['indicators'].url}/indicators", params=params)
            if r.status_code == 200 and r.json()["as_of"]["seq"] >= end:
                break
            assert time.monotonic() < deadline, procs["indicators"].log()
            await asyncio.sleep(0.2)
        figures = r.json()["indicators"]
        assert figures["montant_attribue_cents"]["value"] >= 120_000
        assert figures["projets_developpes"]["value"] >= 1
    assert service_violations(srv) == []


async def test_a_service_cannot_do_anothers_job(srv: AuthServer, services: Any) -> None:
    review, review_errors = await connect(srv, "review")
    indicators, indicator_errors = await connect(srv, "indicators")
    intake, intake_errors = await connect(srv, "intake")
    try:
        envelope = f"fph.events.{Q}.envelope.{envelope_id(2026, Q)}"
        await review.publish(envelope, b"{}")  # the envelope is funding's aggregate
        await denied(review_errors, "publish", envelope)
        await review.publish(f"$KV.FPH_LEASES.{LEASE_KEY}", b"x")  # funding's answers' lease
        await denied(review_errors, "publish", f"$KV.FPH_LEASES.{LEASE_KEY}")
        await review.publish(f"fph.inbox.{PARTNER}.ProjectAccompanied", b"{}")  # as a partner
        await denied(review_errors, "publish", f"fph.inbox.{PARTNER}.ProjectAccompanied")
        await intake.publish(f"$JS.API.CONSUMER.MSG.NEXT.{INBOX_STREAM}.review-inbox-v1", b"1")
        await denied(
            intake_errors, "publish", f"$JS.API.CONSUMER.MSG.NEXT.{INBOX_STREAM}.review-inbox-v1"
        )
        for subject in (f"fph.events.{Q}.envie.x", "fph.receipts.demo.1", "fph.inbox.city.X"):
            await indicators.publish(subject, b"{}")  # indicators only reads
            await denied(indicator_errors, "publish", subject)

        # A second review instance stands by while the running one holds the inbox lease.
        stopping = asyncio.Event()
        standby = Lease(review.jetstream(), nats_auth.inbox_consumer("review"))
        asyncio.get_running_loop().call_later(1.5, stopping.set)
        assert await standby.acquire(stopping) is False
        assert not [e for e in review_errors if "kv_fph_leases" in e]
    finally:
        for nc in (review, indicators, intake):
            await nc.close()


async def test_intake_resumes_its_inbox_after_a_crash_with_its_own_user(
    srv: AuthServer, services: Any
) -> None:
    """The recovery path: a submission delivered but never acked (a crash mid-batch) is
    found at the restart (consumer info, delete, create at the ack floor, receipt lookup)
    and decided, still with intake's user only."""
    intake_proc = services["intake"]
    intake_proc.stop()
    try:
        async with await SubmitClient.connect(srv.url(PARTNER), source=PARTNER) as client:
            inbox_seq = await client.publish("EnvieRecorded", json.dumps(envie()).encode())
            nc, _ = await connect(srv, "intake")
            try:
                sub = await nc.jetstream().pull_subscribe_bind(
                    nats_auth.inbox_consumer("intake"), stream=INBOX_STREAM
                )
                (msg,) = await sub.fetch(1, timeout=5)
                assert msg.metadata.sequence.stream == inbox_seq  # delivered, never acked
            finally:
                await nc.close()
            intake_proc.start()
            receipt = await client.receipt(inbox_seq, timeout=30)
            assert receipt.ok, receipt
    finally:
        if intake_proc.proc is None or intake_proc.proc.poll() is not None:
            intake_proc.start()
    assert "resuming the consumer" in intake_proc.log()
    assert service_violations(srv) == []


def test_funding_lease_key_matches_the_code() -> None:
    assert nats_auth.ANSWERS_LEASE == LEASE_KEY


# --- the principals file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("[partners.admin]\n", "'admin' is both admin and partner"),
        ("[services.billing]\n", "unknown service"),
        ("[partners.Centre_Nord]\n", "not a valid id"),
        ('[partners.x]\ntypes = ["GrantAwarded"]\n', "GrantAwarded cannot be submitted"),
        ('[partners.x]\nname = "X"\n', "unknown key(s) name"),
        ("[groups.x]\n", "unknown section(s) groups"),
    ],
)
def test_principals_are_checked(change: str, message: str) -> None:
    doc = tomllib.loads(PRINCIPALS.read_text() + "\n" + change)
    with pytest.raises(nats_auth.PrincipalsError, match=re.escape(message)):
        nats_auth.parse(doc)


def test_a_partner_limited_to_some_types() -> None:
    doc = tomllib.loads(PRINCIPALS.read_text() + '\n[partners.asso-x]\ntypes = ["EnvieRecorded"]\n')
    principals = nats_auth.parse(doc)
    user = principals.user("asso-x")
    assert user.account == "PARTNER_ASSO_X" and user.permissions is not None
    assert [r.subject for r in user.permissions.publish] == [
        "fph.inbox.asso-x.EnvieRecorded",
        "$JS.API.DIRECT.GET.FPH_RECEIPTS.fph.receipts.asso-x.>",
    ]
    assert "asso-x" in principals.sources


# --- adding and revoking a partner, rotating a password -----------------------------------------


async def wait_for_connection(server: AuthServer, user: str, password: str, **options: Any) -> NATS:
    deadline = time.monotonic() + 10
    while True:
        try:
            return await nats.connect(
                server.url(user, password), allow_reconnect=False, connect_timeout=2, **options
            )
        except Exception:
            assert time.monotonic() < deadline, server.log()[-2000:]
            await asyncio.sleep(0.2)


async def test_adding_revoking_a_partner_and_rotating_a_password(tmp_path: Path) -> None:
    """Adding a partner: one entry, one command (which also writes its password into the
    file auth.conf includes), a restart of nats-server (a new account's imports need one).
    Removing the entry, the same command and a reload revoke it; a new password in the
    file and a reload rotate one."""
    principals = tmp_path / "principals.toml"
    base = PRINCIPALS.read_text()
    principals.write_text(base)
    server = prepare(tmp_path / "nats", principals, passwords_file=True).start()
    passwords = server.directory / "auth.env"
    command = [
        str(principals),
        "-o",
        str(server.directory / "auth.conf"),
        "--passwords-include",
        "auth.env",
        "--env-file",
        str(passwords),
    ]
    try:
        admin_nc = await wait_for_connection(server, "admin", server.passwords["admin"])
        assert await provision(admin_nc.jetstream()) == []
        await admin_nc.close()

        principals.write_text(base + '\n[partners.asso-nouvelle]\ndescription = "new"\n')
        nats_auth.main(command)
        server.restart()
        password = nats_auth.read_env(passwords)[nats_auth.password_env("asso-nouvelle")]
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await wait_for_connection(server, "asso-nouvelle", password, error_cb=on_error)
        ack = await nc.jetstream().publish("fph.inbox.asso-nouvelle.EnvieRecorded", b"{}")
        assert ack.stream == INBOX_STREAM
        await nc.publish("fph.inbox.demo.EnvieRecorded", b"{}")
        await denied(errors, "publish", "fph.inbox.demo.EnvieRecorded")

        principals.write_text(base)
        nats_auth.main(command)
        assert nats_auth.password_env("asso-nouvelle") not in nats_auth.read_env(passwords)
        server.reload()
        deadline = time.monotonic() + 10
        while not nc.is_closed:
            assert time.monotonic() < deadline, "the revoked partner is still connected"
            await asyncio.sleep(0.1)
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(server.url("asso-nouvelle", password), allow_reconnect=False)

        old = server.passwords["demo"]
        new = nats_auth.new_password()
        variable = nats_auth.password_env("demo")
        passwords.write_text(
            passwords.read_text().replace(f"{variable}={old}", f"{variable}={new}")
        )
        server.reload()
        demo = await wait_for_connection(server, "demo", new)
        assert (await demo.jetstream().publish("fph.inbox.demo.EnvieRecorded", b"{}")).seq
        await demo.close()
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(server.url("demo", old), allow_reconnect=False)
    finally:
        server.stop()
