"""``fph-nats-auth``: NATS accounts, users and permissions, generated from one principals file.

``deploy/nats/principals.toml`` names who may connect: the four services, the partners
(one per inbox source), the auditors and the administrators. This module turns it into
an ``accounts { ... }`` block for nats-server (``include`` it from the server's
configuration) where every user gets the least privilege its job needs:

- account ``FPH`` holds the streams (JetStream), the **administrators** (every subject:
  operators, ``fph-provision``) and the **services**, each of which may only read the
  log, decide its own inbox consumer, append to the log on the aggregates of the event
  types it owns, publish receipts and refused copies, hold its own leases and submit
  through the inbox as its desk source;
- each **partner** has an account of its own, ``PARTNER_<ID>``, which imports from
  ``FPH`` only ``fph.inbox.<id>.>`` (a JetStream publish whose acknowledgement comes
  back), its live receipts ``fph.receipts.<id>.>`` and the direct get of them from
  ``FPH_RECEIPTS``; its user is limited to those subjects too;
- account ``AUDIT`` holds the **auditors** and ``FPH_EVENTS`` as a *mirror* of the log
  (same sequences, same bytes, so the same digest): auditors read it (stream info,
  ordered consumers, direct gets) and write nothing.

Why accounts rather than one account with per-user permissions: within one account,
JetStream answers a request on whatever reply subject the requester names, and a push
consumer delivers to whatever subject its creator names (nats-io/nats-server#8274), so a
user allowed only to publish to ``fph.inbox.<id>.>`` could still have the server write
its publish acknowledgement into ``FPH_EVENTS`` or into another source's inbox. Across
accounts, answers to an imported service go back to the requester's account only, and
an auditor's consumers deliver inside ``AUDIT``, where nothing but the mirror is stored.

Passwords are never in these files: the generated configuration references one variable
per user (``password: $FPH_NATS_PASSWORD_<USER>``), which nats-server takes from its
environment, or from a passwords file the block includes (``--passwords-include``,
re-read on a reload). See docs/nats-permissions.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import string
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from shared.events import EVENT_CLASSES, EVENT_TYPES, types_owned_by
from shared.lease import LEASES_BUCKET
from shared.subjects import (
    EVENTS_STREAM,
    INBOX_STREAM,
    RECEIPTS_STREAM,
    REJECTED_STREAM,
)

PASSWORD_ENV_PREFIX = "FPH_NATS_PASSWORD_"
FPH_ACCOUNT = "FPH"
AUDIT_ACCOUNT = "AUDIT"
AUDIT_API = "$JS.AUDIT.API"
"""How an administrator (account FPH) reaches the JetStream API of account AUDIT."""
FPH_API_IN_AUDIT = "$JS.FPH.API"
"""How the mirror in AUDIT reaches FPH's consumer API for ``FPH_EVENTS``."""
MIRROR_DELIVER = "_FPH_AUDIT_MIRROR"
"""Subject prefix on which FPH delivers the log to the mirror in AUDIT."""

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SERVICES = ("intake", "review", "funding", "indicators")
SECTIONS = ("admins", "auditors", "services", "partners")
RESERVED_TYPES = frozenset({"GrantAwarded", "GrantRefused"})
"""Written only by funding (``shared.inbox.FUNDING_ONLY``): never submitted."""

ALL_STREAMS = (EVENTS_STREAM, INBOX_STREAM, RECEIPTS_STREAM, REJECTED_STREAM)
STREAM_SUBJECTS = {EVENTS_STREAM: "fph.events", REJECTED_STREAM: "fph.rejected"}
"""The subjects (``<root>.>``) of the streams some users read with consumers."""
KV_STREAM = f"KV_{LEASES_BUCKET}"
ANSWERS_LEASE = "funding-answers-v1"
"""``services.funding.answers.LEASE_KEY`` (checked by the tests)."""
REPLIES = "_INBOX.>"


def inbox_consumer(service: str) -> str:
    """The durable inbox consumer (and lease key) of a service (``InboxProcessor``)."""
    return f"{service}-inbox-v1"


def password_env(user: str) -> str:
    """``FPH_NATS_PASSWORD_<USER>``: the variable holding a user's password."""
    return PASSWORD_ENV_PREFIX + user.upper().replace("-", "_")


def partner_account(partner: str) -> str:
    """The account of one partner: ``PARTNER_<ID>`` (upper case, '-' as '_')."""
    return "PARTNER_" + partner.upper().replace("-", "_")


# --- the principals file -------------------------------------------------------------------


class PrincipalsError(ValueError):
    """The principals file is not valid; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    """One allowed subject and why it is needed (written as a comment beside it)."""

    subject: str
    why: str


@dataclass(frozen=True)
class Permissions:
    publish: tuple[Rule, ...]
    subscribe: tuple[Rule, ...]


@dataclass(frozen=True)
class User:
    name: str
    role: str  # admin | auditor | service | partner
    account: str
    description: str
    permissions: Permissions | None  # None: every subject of its account (admins)

    @property
    def password_env(self) -> str:
        return password_env(self.name)


@dataclass(frozen=True)
class Partner:
    id: str
    inbox: tuple[str, ...]
    """The inbox subjects it may submit to (``fph.inbox.<id>.>`` or one per type)."""

    @property
    def account(self) -> str:
        return partner_account(self.id)


@dataclass(frozen=True)
class Principals:
    users: tuple[User, ...]
    partners: tuple[Partner, ...]
    sources: tuple[str, ...]
    """Every inbox source: the partners and the services' desk sources (``FPH_SOURCES``)."""

    def user(self, name: str) -> User:
        for user in self.users:
            if user.name == name:
                return user
        raise KeyError(name)

    @property
    def has_auditors(self) -> bool:
        return any(u.role == "auditor" for u in self.users)


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PrincipalsError(f"{where}: [{key}] must be a table of entries")
    return value


def _entry(value: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PrincipalsError(f"{where}: must be a table (e.g. [{where}])")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise PrincipalsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    return value


def _name(name: str, where: str) -> str:
    if not NAME_RE.match(name):
        raise PrincipalsError(
            f"{where}: {name!r} is not a valid id: lower-case letters, digits and '-',"
            " starting with a letter or digit (it becomes a NATS subject token and a user name)"
        )
    return name


def _text(entry: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise PrincipalsError(f"{where}.{key}: must be a string")
    return value


def load(path: Path) -> Principals:
    """Read and check a principals file (stdlib ``tomllib``)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PrincipalsError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, str(path))


def parse(doc: dict[str, Any], origin: str = "principals") -> Principals:
    """Check a principals document and derive every user's account and permissions."""
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise PrincipalsError(
            f"{origin}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}"
        )
    users: list[User] = []
    desk_sources: list[str] = []

    for name, value in _table(doc, "admins", origin).items():
        where = f"admins.{_name(name, 'admins')}"
        entry = _entry(value, where, ["description"])
        description = _text(entry, "description", where, "administrator")
        users.append(User(name, "admin", FPH_ACCOUNT, description, None))

    for name, value in _table(doc, "auditors", origin).items():
        where = f"auditors.{_name(name, 'auditors')}"
        entry = _entry(value, where, ["description"])
        description = _text(entry, "description", where, "auditor")
        users.append(User(name, "auditor", AUDIT_ACCOUNT, description, auditor_permissions()))

    services = _table(doc, "services", origin)
    missing = [s for s in SERVICES if s not in services]
    if missing:
        raise PrincipalsError(
            f"{origin}: [services] lacks {', '.join(missing)}: every service needs its user"
        )
    for name, value in services.items():
        where = f"services.{name}"
        if name not in SERVICES:
            raise PrincipalsError(f"{where}: unknown service; known: {', '.join(SERVICES)}")
        keys = ["description"] if name == "indicators" else ["description", "desk_source"]
        entry = _entry(value, where, keys)
        desk = None
        if name != "indicators":
            desk = _name(_text(entry, "desk_source", where, "city"), f"{where}.desk_source")
            desk_sources.append(desk)
        description = _text(entry, "description", where, f"the {name} service")
        users.append(
            User(name, "service", FPH_ACCOUNT, description, service_permissions(name, desk))
        )

    partners: list[Partner] = []
    for name, value in _table(doc, "partners", origin).items():
        where = f"partners.{_name(name, 'partners')}"
        entry = _entry(value, where, ["description", "types"])
        types = entry.get("types")
        if types is not None:
            if (
                not isinstance(types, list)
                or not types
                or not all(isinstance(t, str) for t in types)
            ):
                raise PrincipalsError(f"{where}.types: must be a non-empty list of event types")
            bad = [t for t in types if t not in EVENT_TYPES or t in RESERVED_TYPES]
            if bad:
                raise PrincipalsError(
                    f"{where}.types: {', '.join(bad)} cannot be submitted; submittable types: "
                    + ", ".join(t for t in EVENT_TYPES if t not in RESERVED_TYPES)
                )
        inbox = (
            (f"fph.inbox.{name}.>",)
            if types is None
            else tuple(f"fph.inbox.{name}.{t}" for t in dict.fromkeys(types))
        )
        partner = Partner(name, inbox)
        partners.append(partner)
        description = _text(entry, "description", where, f"partner {name}")
        users.append(
            User(name, "partner", partner.account, description, partner_permissions(partner))
        )

    seen: dict[str, str] = {}
    for user in users:
        if user.name in seen:
            raise PrincipalsError(
                f"{origin}: {user.name!r} is both {seen[user.name]} and {user.role}:"
                " user names must be unique across sections"
            )
        seen[user.name] = user.role
    if not any(u.role == "admin" for u in users):
        raise PrincipalsError(f"{origin}: no [admins] entry: someone must provision the streams")
    sources = tuple(dict.fromkeys([*(p.id for p in partners), *desk_sources]))
    return Principals(tuple(users), tuple(partners), sources)


# --- what each user may do -----------------------------------------------------------------


def _api(action: str, why: str) -> Rule:
    return Rule(f"$JS.API.{action}", why)


def _reading(stream: str, what: str, push: bool = True) -> list[Rule]:
    """Reading ``stream`` from a sequence: ``shared.reader.OrderedReader`` pulls from named
    ephemeral consumers; nats-py's ordered push consumers (``EventLog.read``, used by the
    services that append: ``push``) are created on the unnamed subject and answer flow
    control."""
    root = STREAM_SUBJECTS[stream]
    rules = [
        _api(f"CONSUMER.CREATE.{stream}.*.{root}.>", f"consumers reading {what} (OrderedReader)"),
        _api(f"CONSUMER.MSG.NEXT.{stream}.*", "pull from them"),
        _api(f"CONSUMER.DELETE.{stream}.*", "remove them when done"),
    ]
    if push:
        rules += [
            _api(f"CONSUMER.CREATE.{stream}", f"ordered push consumers reading {what} (nats-py)"),
            Rule(f"$JS.FC.{stream}.>", "their flow-control answers"),
        ]
    return rules


def _aggregates_of(service: str) -> list[str]:
    return sorted({c.AGGREGATE.value for c in EVENT_CLASSES if service == c.OWNER})


def _submittable(service: str) -> list[str]:
    return [t for t in types_owned_by(service) if t not in RESERVED_TYPES]


def _lease(key: str, why: str) -> list[Rule]:
    return [
        Rule(f"$KV.{LEASES_BUCKET}.{key}", f"take, renew and release the lease {why}"),
        _api(f"DIRECT.GET.{KV_STREAM}.$KV.{LEASES_BUCKET}.{key}", f"who holds the lease {why}"),
    ]


def service_permissions(service: str, desk_source: str | None) -> Permissions:
    """What one service needs, read from its code (``shared.runtime``, ``shared.inbox``,
    ``shared.follower``, ``shared.lease``, ``shared.client``, ``services.funding.answers``,
    ``services.indicators``) and checked against a real server by the tests."""
    publish: list[Rule] = [
        _api(f"STREAM.INFO.{s}", "start-up check that the streams exist; the log's end")
        for s in ALL_STREAMS
    ]
    subscribe = [Rule(REPLIES, "answers to its requests, its consumers' deliveries")]
    if service == "indicators":  # it only reads, with OrderedReader
        publish += _reading(EVENTS_STREAM, "the log", push=False)
        publish += _reading(REJECTED_STREAM, "FPH_REJECTED (/metrics counts refusals)", push=False)
        return Permissions(tuple(publish), tuple(subscribe))
    publish += _reading(EVENTS_STREAM, "the log")

    assert desk_source is not None
    consumer = inbox_consumer(service)
    owned = _submittable(service)
    aggregates = _aggregates_of(service)
    publish += [
        _api(
            f"DIRECT.GET.{EVENTS_STREAM}.fph.events.*.{aggregate}.*",
            f"the last sequence of one of its {aggregate}s",
        )
        for aggregate in aggregates
    ]
    publish += [
        _api(
            f"CONSUMER.INFO.{INBOX_STREAM}.{consumer}", "its inbox consumer: resume after a crash"
        ),
        _api(f"CONSUMER.DURABLE.CREATE.{INBOX_STREAM}.{consumer}", "create its inbox consumer"),
        _api(f"CONSUMER.CREATE.{INBOX_STREAM}.{consumer}", "(the same, newer API forms)"),
        _api(f"CONSUMER.CREATE.{INBOX_STREAM}.{consumer}.>", "(the same, newer API forms)"),
        _api(f"CONSUMER.DELETE.{INBOX_STREAM}.{consumer}", "recreate it at its ack floor"),
        _api(f"CONSUMER.MSG.NEXT.{INBOX_STREAM}.{consumer}", "fetch its submissions"),
        Rule(f"$JS.ACK.{INBOX_STREAM}.{consumer}.>", "ack its submissions"),
        _api(f"STREAM.MSG.GET.{RECEIPTS_STREAM}", "was a submission answered before a crash?"),
        _api(f"STREAM.INFO.{KV_STREAM}", "the leases bucket"),
        _api(f"STREAM.MSG.GET.{KV_STREAM}", "who holds a lease (standing by)"),
    ]
    publish += _lease(consumer, "deciding its inbox")
    if service == "funding":
        publish += _lease(ANSWERS_LEASE, "answering committee decisions")
    publish += [
        Rule(f"fph.events.*.{aggregate}.*", f"append to the log: its {aggregate}s only")
        for aggregate in aggregates
    ]
    publish.append(Rule("fph.receipts.*.*", "the receipt of every submission it decides"))
    if service == "intake":
        publish.append(Rule("fph.rejected.>", "refused copies (the gatekeeper: any type)"))
    else:
        publish += [Rule(f"fph.rejected.*.{t}", "refused copies of its types") for t in owned]
    publish += [
        Rule(f"fph.inbox.{desk_source}.{t}", f"its HTTP desk submits as {desk_source}")
        for t in owned
    ]
    publish.append(
        _api(
            f"DIRECT.GET.{RECEIPTS_STREAM}.fph.receipts.{desk_source}.*",
            "its desk fetches a receipt it missed",
        )
    )
    subscribe.append(Rule(f"fph.receipts.{desk_source}.*", "its desk waits for its receipts"))
    return Permissions(tuple(publish), tuple(subscribe))


def partner_permissions(partner: Partner) -> Permissions:
    """Submit as itself only; read its own receipts only (within its own account)."""
    publish = [Rule(subject, "submit, as itself only") for subject in partner.inbox]
    publish.append(
        _api(
            f"DIRECT.GET.{RECEIPTS_STREAM}.fph.receipts.{partner.id}.>",
            "fetch one of its receipts later (direct get by subject)",
        )
    )
    subscribe = [
        Rule(f"fph.receipts.{partner.id}.>", "its receipts, live"),
        Rule(REPLIES, "its publish acks and direct-get answers (its account's own)"),
        Rule(f"_INBOX_{partner.id}.>", "the same, if its client sets this reply prefix"),
    ]
    return Permissions(tuple(publish), tuple(subscribe))


def auditor_permissions() -> Permissions:
    """Read the mirror of the log in AUDIT (info, ordered consumers, gets); write nothing."""
    publish = [
        _api(f"STREAM.INFO.{EVENTS_STREAM}", "the log's end and configuration"),
        # push consumers too: an auditor's own tools (nats CLI, nats-py) read that way; the
        # flow-control subject it may answer on reaches FPH only for the mirror's exact one
        *_reading(EVENTS_STREAM, "the log"),
        _api(f"DIRECT.GET.{EVENTS_STREAM}", "one message by sequence"),
        _api(f"DIRECT.GET.{EVENTS_STREAM}.>", "the last message of a subject"),
        _api(f"STREAM.MSG.GET.{EVENTS_STREAM}", "one message, from the stream leader"),
    ]
    subscribe = [Rule(REPLIES, "answers to its requests, its consumers' deliveries")]
    return Permissions(tuple(publish), tuple(subscribe))


# --- the accounts: what crosses between them --------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A service or stream exported by one account and imported by another."""

    kind: str  # service (request and its answer) | stream (messages flowing one way)
    exporter: str
    importer: str
    subject: str
    local: str | None  # the subject in the importing account, when it differs
    why: str


def links(principals: Principals) -> list[Link]:
    out: list[Link] = []
    if principals.has_auditors:
        out += [
            Link(
                "service",
                FPH_ACCOUNT,
                AUDIT_ACCOUNT,
                f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}",
                f"{FPH_API_IN_AUDIT}.CONSUMER.CREATE.{EVENTS_STREAM}",
                "the auditors' mirror reads the log",
            ),
            Link(
                "stream",
                FPH_ACCOUNT,
                AUDIT_ACCOUNT,
                f"{MIRROR_DELIVER}.>",
                None,
                "the log, delivered to the mirror",
            ),
            Link(
                "service",
                FPH_ACCOUNT,
                AUDIT_ACCOUNT,
                f"$JS.FC.{EVENTS_STREAM}.>",
                None,
                "the mirror's flow-control answers (the server ignores any but the exact one)",
            ),
            Link(
                "service",
                AUDIT_ACCOUNT,
                FPH_ACCOUNT,
                "$JS.API.>",
                f"{AUDIT_API}.>",
                "administrators manage AUDIT's JetStream (the mirror)",
            ),
        ]
    for partner in principals.partners:
        account = partner.account
        out += [
            Link("service", FPH_ACCOUNT, account, subject, None, "its submissions (JetStream)")
            for subject in partner.inbox
        ]
        out += [
            Link(
                "stream",
                FPH_ACCOUNT,
                account,
                f"fph.receipts.{partner.id}.>",
                None,
                "its receipts, live",
            ),
            Link(
                "service",
                FPH_ACCOUNT,
                account,
                f"$JS.API.DIRECT.GET.{RECEIPTS_STREAM}.fph.receipts.{partner.id}.>",
                None,
                "its stored receipts, by direct get",
            ),
        ]
    return out


# --- rendering ----------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rules(kind: str, rules: Sequence[Rule], indent: str) -> list[str]:
    lines = [f"{indent}{kind}: {{", f"{indent}  allow: ["]
    width = max(len(_quote(r.subject)) for r in rules)
    for rule in rules:
        lines.append(f"{indent}    {_quote(rule.subject).ljust(width)}  # {rule.why}")
    lines += [f"{indent}  ]", f"{indent}}}"]
    return lines


def _user(user: User, indent: str) -> list[str]:
    out = [f"{indent}# {user.name} ({user.role}): {user.description}", f"{indent}{{"]
    out.append(f"{indent}  user: {_quote(user.name)}")
    out.append(f"{indent}  password: ${user.password_env}")
    if user.permissions is not None:
        out.append(f"{indent}  permissions: {{")
        out += _rules("publish", user.permissions.publish, indent + "    ")
        out += _rules("subscribe", user.permissions.subscribe, indent + "    ")
        out.append(f"{indent}  }}")
    out.append(f"{indent}}}")
    return out


def _aligned(entries: Sequence[tuple[str, str]], indent: str) -> list[str]:
    width = max(len(text) for text, _ in entries)
    return [f"{indent}{text.ljust(width)}  # {why}" for text, why in entries]


def _account(
    name: str,
    title: str,
    jetstream: bool,
    users: Sequence[User],
    all_links: Sequence[Link],
) -> list[str]:
    out = ["", f"  # --- {title}", f"  {name}: {{"]
    if jetstream:
        out.append("    jetstream: enabled")
    out.append("    users: [")
    for user in users:
        out += _user(user, "      ")
    out.append("    ]")
    exports = [link for link in all_links if link.exporter == name]
    if exports:
        out.append("    exports: [")
        out += _aligned(
            [
                (
                    f"{{{link.kind}: {_quote(link.subject)}, accounts: [{link.importer}]}}",
                    link.why,
                )
                for link in exports
            ],
            "      ",
        )
        out.append("    ]")
    imports = [link for link in all_links if link.importer == name]
    if imports:
        out.append("    imports: [")
        entries = []
        for link in imports:
            text = f"{{{link.kind}: {{account: {link.exporter}, subject: {_quote(link.subject)}}}"
            text += f", to: {_quote(link.local)}}}" if link.local else "}"
            entries.append((text, link.why))
        out += _aligned(entries, "      ")
        out.append("    ]")
    out.append("  }")
    return out


def render_config(principals: Principals, origin: str, passwords_include: str | None = None) -> str:
    """The ``accounts`` block, with a comment on every allowed subject; with
    ``passwords_include``, it first includes that file, which defines the passwords."""
    all_links = links(principals)
    users = principals.users
    out = [
        f"# Generated by fph-nats-auth from {origin}: do not edit; edit {origin}",
        "# and run the command again (docs/nats-permissions.md). Include it from the",
        "# nats-server configuration (`include auth.conf`). Each user's password is the",
        f"# variable {PASSWORD_ENV_PREFIX}<USER>: "
        + (
            "defined in the file included below (reloaded"
            " with the configuration), or else taken from nats-server's environment."
            if passwords_include
            else "taken from nats-server's environment."
        ),
    ]
    if passwords_include:
        out.append(f"include {_quote(passwords_include)}")
    out.append("accounts: {")
    out += _account(
        FPH_ACCOUNT,
        "FPH: the streams; the administrators (every subject) and the services",
        True,
        [u for u in users if u.account == FPH_ACCOUNT],
        all_links,
    )
    if principals.has_auditors:
        out += _account(
            AUDIT_ACCOUNT,
            f"AUDIT: the auditors, reading {EVENTS_STREAM} as a mirror of the log;"
            " they write nothing",
            True,
            [u for u in users if u.account == AUDIT_ACCOUNT],
            all_links,
        )
    for partner in principals.partners:
        out += _account(
            partner.account,
            f"{partner.id}: submits as itself only, reads its own receipts only",
            False,
            [u for u in users if u.account == partner.account],
            all_links,
        )
    out += ["}", ""]
    return "\n".join(out)


def render_env_example(principals: Principals, origin: str) -> str:
    """One ``FPH_NATS_PASSWORD_<USER>=`` line per user, with a placeholder."""
    out = [
        f"# The NATS passwords of the users of {origin} (generated by fph-nats-auth).",
        "# Copy it to an env file kept out of git, or let `fph-nats-auth ... --env-file FILE`",
        "# write random ones. nats-server reads them when it loads auth.conf; each service",
        "# puts its own in its FPH_NATS_URL (nats://<user>:<password>@host:port).",
        "# A password must be letters and digits only and start with a letter: nats-server",
        "# parses a variable's value like a configuration value (1234 would be a number).",
        "# This file may also be included by nats-server (fph-nats-auth --passwords-include):",
        "# then it must hold these variables and nothing else.",
    ]
    for user in principals.users:
        out += [
            "",
            f"# {user.name} ({user.role}, account {user.account}): {user.description}",
            f"{user.password_env}=change-me",
        ]
    out.append("")
    return "\n".join(out)


PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{11,}$")
_ALPHABET = string.ascii_letters + string.digits


def new_password(length: int = 32) -> str:
    """Random, letters and digits, starting with a letter (safe in nats-server's config
    parser and in a URL without escaping)."""
    return secrets.choice(string.ascii_letters) + "".join(
        secrets.choice(_ALPHABET) for _ in range(length - 1)
    )


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def update_env_file(
    path: Path, principals: Principals, sources: bool = True
) -> tuple[list[str], list[str], list[str]]:
    """Add a random password for every user that has none (existing ones are kept), drop
    those of users no longer in the principals and, with ``sources``, set ``FPH_SOURCES``
    (the services' list of inbox sources); the variables added, removed, and those whose
    value nats-server would misread."""
    existing = read_env(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if not lines:
        lines = ["# NATS passwords (fph-nats-auth --env-file): keep this file secret."]
    wanted = {u.password_env for u in principals.users}
    removed = sorted(k for k in existing if k.startswith(PASSWORD_ENV_PREFIX) and k not in wanted)
    lines = [ln for ln in lines if ln.partition("=")[0].strip() not in removed]
    added: list[str] = []
    for user in principals.users:
        if user.password_env not in existing:
            lines.append(f"{user.password_env}={new_password()}")
            added.append(user.password_env)
    if sources:
        line = f"FPH_SOURCES={','.join(principals.sources)}"
        at = [i for i, ln in enumerate(lines) if ln.partition("=")[0].strip() == "FPH_SOURCES"]
        if at:
            lines[at[0]] = line
        else:
            lines.append(line)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    unusable = [
        u.password_env
        for u in principals.users
        if u.password_env in existing and not PASSWORD_RE.match(existing[u.password_env])
    ]
    return added, removed, unusable


# --- the auditors' mirror ---------------------------------------------------------------------


def audit_mirror_config(replicas: int = 1) -> js_api.StreamConfig:
    """``FPH_EVENTS`` in account AUDIT: a mirror of the log (same sequences and bytes)."""
    return js_api.StreamConfig(
        name=EVENTS_STREAM,
        description="The auditors' copy of the FPH event log (a mirror: nobody writes it)",
        mirror=js_api.StreamSource(
            name=EVENTS_STREAM,
            external=js_api.ExternalStream(
                api=FPH_API_IN_AUDIT, deliver=f"{MIRROR_DELIVER}.{EVENTS_STREAM}"
            ),
        ),
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        num_replicas=replicas,
        max_age=0,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
    )


async def provision_audit_mirror(nc: NATS, replicas: int = 1) -> str:
    """Create the auditors' mirror if missing (as an administrator of account FPH); what
    was done. An existing stream that is not this mirror is reported, never changed."""
    js = nc.jetstream(prefix=AUDIT_API)
    wanted = audit_mirror_config(replicas)
    try:
        info = await js.stream_info(EVENTS_STREAM)
    except NotFoundError:
        await js.add_stream(wanted)
        return f"created the mirror {EVENTS_STREAM} in account {AUDIT_ACCOUNT}"
    mirror = info.config.mirror
    external = mirror.external if mirror else None
    if mirror is None or mirror.name != EVENTS_STREAM or external is None:
        raise RuntimeError(
            f"{EVENTS_STREAM} in account {AUDIT_ACCOUNT} exists but is not a mirror of the"
            " log: not changed; delete it deliberately and run this again"
        )
    lag = info.mirror.lag if info.mirror else None
    return (
        f"the mirror {EVENTS_STREAM} in account {AUDIT_ACCOUNT} exists"
        f" (last seq {info.state.last_seq}, lag {lag})"
    )


async def _provision(url: str, replicas: int) -> str:
    servers = [part.strip() for part in url.split(",") if part.strip()]  # a cluster's nodes
    nc = await nats.connect(servers, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await provision_audit_mirror(nc, replicas)
    finally:
        await nc.drain()


# --- the command ----------------------------------------------------------------------------

DESCRIPTION = """\
Generate the NATS accounts, users and permissions of the FPH platform from one principals
file (deploy/nats/principals.toml): an `accounts { ... }` block to include from the
nats-server configuration.

  account FPH        the streams; administrators (every subject) and the four services,
                     each with the least privilege its job needs
  account AUDIT      auditors: read FPH_EVENTS, a mirror of the log, and write nothing
  PARTNER_<ID>       one account per partner: it may publish only to fph.inbox.<id>.>
                     and read only its own receipts (fph.receipts.<id>.>, live and by
                     direct get)

Passwords are not in the generated files: each user's password is the variable
FPH_NATS_PASSWORD_<USER> (upper case, '-' becomes '_'), taken from nats-server's
environment, or from a file the configuration includes (--passwords-include), which a
reload re-reads.
"""

EPILOG = """\
examples:
  fph-nats-auth deploy/nats/principals.toml -o deploy/nats/auth.conf \\
      --env-example deploy/nats/auth.env.example
        regenerate the committed files after editing the principals
  fph-nats-auth deploy/nats/principals.toml -o deploy/nats/auth.conf \\
      --env-example deploy/nats/auth.env.example --check
        exit 1 if they are stale (CI)
  fph-nats-auth deploy/nats/principals.toml -o /etc/nats/auth.conf \\
      --passwords-include auth.env --env-file /etc/nats/auth.env
        a deployment whose passwords live in auth.env beside auth.conf: adds a random
        password for every new user, drops those of removed users, keeps the others
  fph-nats-auth deploy/nats/principals.toml --provision-audit-mirror \\
      nats://admin:$FPH_NATS_PASSWORD_ADMIN@nats:4222
        once, after fph-provision: create the auditors' mirror of the log

Adding a partner: one [partners.<id>] entry, the command (with --env-file for its password),
then restart nats-server (node by node on a cluster): an account added by a reload does not
get its imports (nats-server 2.15). Revoking one, changing permissions, or (with
--passwords-include) rotating a password: the command, then a reload (SIGHUP, or
`nats-server --signal reload=<pid>`). Details: docs/nats-permissions.md.
"""


def _stale(path: Path, content: str) -> bool:
    return not path.exists() or path.read_text(encoding="utf-8") != content


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fph-nats-auth",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "principals",
        type=Path,
        nargs="?",
        help="the principals file (TOML); optional with --provision-audit-mirror alone",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the accounts block there (default: standard output, unless only"
        " --env-file or --provision-audit-mirror is asked for)",
    )
    parser.add_argument(
        "--passwords-include",
        metavar="NAME",
        help="make the block include NAME (relative to the block's own file) first: the"
        " passwords file, in the KEY=value form of --env-file, re-read on every reload",
    )
    parser.add_argument(
        "--env-example",
        type=Path,
        metavar="FILE",
        help="also write the FPH_NATS_PASSWORD_* variables with placeholders",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="create or update a real passwords file: a random password for every user"
        " without one, none for users no longer listed, existing ones kept; mode 0600",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the --output or --env-example file is missing or stale",
    )
    parser.add_argument(
        "--provision-audit-mirror",
        metavar="NATS_URL",
        help="as the administrator in NATS_URL (several of a cluster comma-separated), create"
        " the auditors' mirror of FPH_EVENTS in account AUDIT if it is missing (once, after"
        " fph-provision)",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="replicas of the mirror (3 on a cluster)"
    )
    args = parser.parse_args(argv)
    if args.principals is None:
        if (
            args.provision_audit_mirror is None
            or args.output
            or args.env_example
            or (args.env_file or args.check)
        ):
            parser.error("the principals file is needed (only --provision-audit-mirror is not)")
        _provision_or_exit(args.provision_audit_mirror, args.replicas)
        return
    origin = args.principals.as_posix()
    label = args.principals.name  # in the files: the same whatever the working directory
    try:
        principals = load(args.principals)
    except (OSError, PrincipalsError) as exc:
        print(f"fph-nats-auth: {exc}", file=sys.stderr)
        sys.exit(2)
    config = render_config(principals, label, args.passwords_include)
    outputs: list[tuple[Path, str]] = []
    if args.output is not None:
        outputs.append((args.output, config))
    if args.env_example is not None:
        outputs.append((args.env_example, render_env_example(principals, label)))

    if args.check:
        if not outputs:
            parser.error("--check needs --output and/or --env-example")
        stale = [str(path) for path, content in outputs if _stale(path, content)]
        if stale:
            print(
                f"fph-nats-auth: stale: {', '.join(stale)}: regenerate from {origin} (see --help)",
                file=sys.stderr,
            )
            sys.exit(1)
        print(f"up to date with {origin}: {', '.join(str(p) for p, _ in outputs)}")
        return

    acting = args.env_file is not None or args.provision_audit_mirror is not None
    if args.output is None and not acting:
        sys.stdout.write(config)
    for path, content in outputs:
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    if outputs or not acting:
        print(
            f"{len(principals.users)} users: "
            + ", ".join(f"{u.name} ({u.account})" for u in principals.users)
            + "\nthe services must accept these sources: FPH_SOURCES="
            + ",".join(principals.sources),
            file=sys.stderr,
        )
    if args.env_file is not None:
        included = (
            args.output is not None
            and args.passwords_include is not None
            and (args.output.parent / args.passwords_include).resolve() == args.env_file.resolve()
        )  # nats-server reads that file: nothing but the passwords in it
        added, removed, unusable = update_env_file(args.env_file, principals, sources=not included)
        print(
            f"{args.env_file}: {len(added)} password(s) added"
            + (f" ({', '.join(added)})" if added else "")
            + f", {len(removed)} removed"
            + (f" ({', '.join(removed)})" if removed else ""),
            file=sys.stderr,
        )
        if unusable:
            print(
                f"fph-nats-auth: {args.env_file}: {', '.join(unusable)}: a password must be"
                " letters and digits only, at least 12, starting with a letter (nats-server"
                " parses it like a configuration value)",
                file=sys.stderr,
            )
            sys.exit(1)
    if args.provision_audit_mirror is not None:
        if not principals.has_auditors:
            print("fph-nats-auth: no [auditors] in the principals: no mirror", file=sys.stderr)
            sys.exit(2)
        _provision_or_exit(args.provision_audit_mirror, args.replicas)


def _provision_or_exit(url: str, replicas: int) -> None:
    try:
        print(asyncio.run(_provision(url, replicas)))
    except (NoRespondersError, NatsTimeoutError, ServiceUnavailableError):
        print(
            f"fph-nats-auth: no answer from account {AUDIT_ACCOUNT}'s JetStream: is the server"
            f" running with the generated accounts, and the user in {url.split('@')[0]}@..."
            " an administrator?",
            file=sys.stderr,
        )
        sys.exit(1)
    except Exception as exc:
        print(f"fph-nats-auth: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
