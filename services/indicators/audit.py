"""``fph-audit``: export the log, replay it into an empty store, verify the live service.

An auditor checks the city's figures without trusting its servers' databases:

- ``export`` writes ``FPH_EVENTS`` to JSON Lines, one message per line with its
  sequence, subject, headers and exact payload bytes (base64), so the digest chain of
  CONTRACT 4 can be recomputed from the file alone;
- ``replay`` applies the log (from the server or from an export) into an empty
  indicators store, with the very code the live service runs
  (``shared.follower.apply_messages``), and prints the indicators and the digest;
- ``verify`` replays up to a sequence and compares the digest and every figure, for
  every year and quartier in the log, with the live service's ``/indicators``; it
  prints "identical", or the first divergent figure and the events behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx
import nats
import sqlalchemy as sa
from nats.js.errors import NotFoundError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tqdm import tqdm

from services.indicators import reference, store
from services.indicators.app import FOLLOWER_NAME
from shared.follower import MSG_ID, apply_messages
from shared.log import EVENT_TYPE_HEADER, EventLog
from shared.reader import BATCH, LoggedMessage, OrderedReader
from shared.settings import CommonSettings, nats_servers
from shared.store import get_checkpoint, make_engine, metadata
from shared.subjects import EVENTS_STREAM

EXPORT_FORMAT = "fph-events-export/1"


# --- reading the log ----------------------------------------------------------------------


async def read_server(
    nats_url: str, until_seq: int | None = None, *, progress: bool = False
) -> AsyncIterator[list[LoggedMessage]]:
    """``FPH_EVENTS`` from seq 1 to its end as it is now (or ``until_seq``), in batches."""
    nc = await nats.connect(
        nats_servers(nats_url),
        name="fph-audit",
        connect_timeout=5,
        max_reconnect_attempts=3,
        error_cb=_quiet,  # a failure to connect is reported once, by main()
    )
    try:
        js = nc.jetstream()
        try:
            end = await EventLog(js).last_seq()
        except NotFoundError:
            raise SystemExit(
                f"error: no {EVENTS_STREAM} stream on {nats_url}: is it the right server?"
            ) from None
        if until_seq is not None:
            if until_seq > end:
                raise SystemExit(f"error: --as-of-seq {until_seq} is beyond the log's end ({end})")
            end = until_seq
        if end == 0:
            return
        bar = tqdm(total=end, unit="ev", desc="reading", disable=not progress, file=sys.stderr)
        try:
            async with OrderedReader(js, 1) as reader:
                seq = 0
                while seq < end:
                    batch = [m for m in await reader.next_batch(timeout=30) if m.seq <= end]
                    if batch:
                        seq = batch[-1].seq
                        bar.update(len(batch))
                        yield batch
        finally:
            bar.close()
    finally:
        await nc.close()


async def _quiet(exc: Exception) -> None:
    pass


def export_line(msg: LoggedMessage) -> str:
    """One JSON Lines record: seq, subject, headers and the exact payload (base64)."""
    return json.dumps(
        {
            "seq": msg.seq,
            "subject": msg.subject,
            "headers": dict(msg.headers),
            "data": base64.b64encode(msg.data).decode("ascii"),
        },
        ensure_ascii=False,
    )


def read_export(path: Path, until_seq: int | None = None) -> Iterator[list[LoggedMessage]]:
    """The messages of an export file, in batches (a bad line is reported with its number).

    The event's type and id are taken from the payload, which the digest covers, not
    from the file's headers: a file whose digest matches replays to the same figures."""
    batch: list[LoggedMessage] = []
    previous = 0
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if number == 1 and record.get("format") == EXPORT_FORMAT:
                    continue
                data = base64.b64decode(record["data"], validate=True)
                msg = LoggedMessage(
                    int(record["seq"]), data, _headers_of(data), str(record.get("subject", ""))
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise SystemExit(f"error: {path}:{number}: not an export record ({exc})") from None
            if msg.seq != previous + 1:
                raise SystemExit(
                    f"error: {path}:{number}: seq {msg.seq} after {previous}: the export must"
                    " hold the log from seq 1, every sequence, in order"
                )
            previous = msg.seq
            if until_seq is not None and msg.seq > until_seq:
                break
            batch.append(msg)
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _headers_of(data: bytes) -> dict[str, str]:
    """``Fph-Event-Type`` and ``Nats-Msg-Id`` as the payload says (empty if it is not an
    event: the replay then ignores it, as the service does)."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        return {}
    return {EVENT_TYPE_HEADER: str(doc.get("type", "")), MSG_ID: str(doc.get("event_id", ""))}


async def export(nats_url: str, out: TextIO, until_seq: int | None, *, progress: bool) -> int:
    """Write the log to ``out`` as JSON Lines; the number of messages written."""
    out.write(json.dumps({"format": EXPORT_FORMAT, "stream": EVENTS_STREAM}) + "\n")
    count = 0
    async for batch in read_server(nats_url, until_seq, progress=progress):
        for msg in batch:
            out.write(export_line(msg) + "\n")
        count += len(batch)
    return count


# --- replaying into a store -----------------------------------------------------------------


def empty_store(database_url: str) -> Engine:
    """An engine on a store with no indicators in it yet (refuse a used one)."""
    engine = make_engine(database_url)
    metadata.create_all(engine)
    with Session(engine) as session:
        position = get_checkpoint(session, FOLLOWER_NAME)
        digests = session.scalar(sa.select(sa.func.count()).select_from(store.digests))
    if position or digests:
        engine.dispose()
        raise SystemExit(
            f"error: the store at {database_url} already holds a projection (up to seq"
            f" {position}); replay needs an empty store: give a new --database-url"
        )
    store.prepare(engine)
    return engine


async def replay(
    engine: Engine,
    tz: ZoneInfo,
    *,
    nats_url: str | None = None,
    export_file: Path | None = None,
    until_seq: int | None = None,
    progress: bool = False,
) -> int:
    """Apply the log from the server or an export into ``engine``; the last seq applied."""
    projection = store.IndicatorsProjection(tz)
    position = 0
    if export_file is not None:
        total = until_seq
        bar = tqdm(total=total, unit="ev", desc="replaying", disable=not progress, file=sys.stderr)
        for batch in read_export(export_file, until_seq):
            position = apply_messages(engine, FOLLOWER_NAME, projection, position, batch)
            bar.update(len(batch))
        bar.close()
    else:
        assert nats_url is not None
        # One batch is applied in a worker thread while the next ones are received.
        applying: asyncio.Future[int] | None = None
        async for batch in read_server(nats_url, until_seq, progress=progress):
            if applying is not None:
                position = await applying
            applying = asyncio.ensure_future(
                asyncio.to_thread(
                    apply_messages, engine, FOLLOWER_NAME, projection, position, batch
                )
            )
        if applying is not None:
            position = await applying
    if until_seq is not None and position != until_seq:
        raise SystemExit(f"error: the log ends at seq {position}, before --as-of-seq {until_seq}")
    return position


def years(session: Session, as_of: int) -> list[int]:
    """The local years in which the projected events occurred (up to ``as_of``)."""
    found: set[int] = set()
    tables = (
        store.envies, store.accompaniments, store.grants, store.completions,
        store.porteurs, store.impacts, store.mobilisations, store.decisions,
    )  # fmt: skip
    for table in tables:
        low, high = session.execute(
            sa.select(sa.func.min(table.c.local_date), sa.func.max(table.c.local_date)).where(
                table.c.seq <= as_of
            )
        ).one()
        if low is not None:
            found.update(range(low.year, high.year + 1))
    return sorted(found)


def quartiers(session: Session, as_of: int) -> list[str]:
    """The quartiers that have projected events (up to ``as_of``)."""
    return sorted(
        session.scalars(
            sa.select(store.events.c.quartier).where(store.events.c.seq <= as_of).distinct()
        )
    )


def print_table(out: TextIO, title: str, values: dict[str, Any], as_of: int, digest: str) -> None:
    out.write(f"\n{title}  (as of seq {as_of})\n")
    width = max(len(code) for code in values)
    for code, value in values.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = "null" if value is None else str(value)
        out.write(f"  {code:<{width}}  {shown}\n")
    out.write(f"  {'digest':<{width}}  {digest}\n")


# --- verifying the live service -------------------------------------------------------------


@dataclass
class Divergence:
    what: str
    details: list[str]


def first_divergent_seq(live: httpx.Client, session: Session, upto: int) -> int:
    """The first sequence whose digest differs between the live service and the replay
    (binary search through ``/indicators?as_of_seq=``: the chain never re-converges)."""
    low, high = 1, upto
    while low < high:
        middle = (low + high) // 2
        if _live_digest(live, middle) == store.digest_at(session, middle):
            low = middle + 1
        else:
            high = middle
    return low


def _live_digest(live: httpx.Client, seq: int) -> str:
    answer = _get(live, "/indicators", {"from": "2000-01-01", "to": "2100-01-01", "as_of_seq": seq})
    return str(answer["as_of"]["digest"])


def _get(live: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    response = live.get(path, params=params)
    if response.status_code != 200:
        raise SystemExit(
            f"error: the live service answered {response.status_code} to {path}"
            f" {params}: {response.text[:500]}"
        )
    result: dict[str, Any] = response.json()
    return result


def verify(
    live: httpx.Client, session: Session, as_of: int, tz: ZoneInfo
) -> tuple[int, Divergence | None]:
    """Compare the replayed store with the live service at ``as_of``; the number of
    figures compared and the first divergence (``None``: identical)."""
    replay_digest = store.digest_at(session, as_of)
    answer = _get(
        live, "/indicators", {"from": "2000-01-01", "to": "2100-01-01", "as_of_seq": as_of}
    )
    if answer["as_of"]["digest"] != replay_digest:
        seq = first_divergent_seq(live, session, as_of)
        return 0, Divergence(
            f"digest: the live service's log differs from the replayed one from seq {seq}",
            [
                f"live   digest at {as_of}: {answer['as_of']['digest']}",
                f"replay digest at {as_of}: {replay_digest}",
                f"first divergent seq: {seq} (the live store does not hold the log"
                " as the server or the export has it)",
            ],
        )
    compared = 0
    for year in years(session, as_of):
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
        for quartier in [None, *quartiers(session, as_of)]:
            params: dict[str, Any] = {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "as_of_seq": as_of,
            }
            if quartier is not None:
                params["quartier"] = quartier
            live_values = {
                k: v["value"] for k, v in _get(live, "/indicators", params)["indicators"].items()
            }
            replayed = store.indicators(
                session, quartier=quartier, start=start, end=end, as_of=as_of
            )
            for code, value in replayed.items():
                compared += 1
                if live_values.get(code) != value:
                    return compared, _figure_divergence(
                        live, session, code, params, live_values.get(code), value, tz
                    )
    return compared, None


def _figure_divergence(
    live: httpx.Client,
    session: Session,
    code: str,
    params: dict[str, Any],
    live_value: Any,
    replay_value: Any,
    tz: ZoneInfo,
) -> Divergence:
    quartier = params.get("quartier")
    where = f"{quartier or 'all quartiers'}, {params['from']} to {params['to']}"
    as_of = int(params["as_of_seq"])
    replayed = reference.lineage(
        store.logged_events(session, quartier, as_of),
        code,
        quartier=quartier,
        start=date.fromisoformat(params["from"]),
        end=date.fromisoformat(params["to"]),
        as_of_seq=as_of,
        tz=tz,
    )
    live_lineage = _get(live, f"/indicators/{code}/lineage", params)["contributions"]

    def key(c: dict[str, Any]) -> str:
        return json.dumps(c, sort_keys=True, default=str)

    replay_keys = {key(json.loads(json.dumps(c, default=str))): c for c in replayed}
    live_keys = {key(c): c for c in live_lineage}
    details = [
        f"live value:   {json.dumps(live_value)}",
        f"replay value: {json.dumps(replay_value)}",
    ]
    only_replay = [c for k, c in replay_keys.items() if k not in live_keys]
    only_live = [c for k, c in live_keys.items() if k not in replay_keys]
    for c in only_replay:
        details.append(f"only in the replay's lineage: {_event_line(c)}")
    for c in only_live:
        details.append(f"only in the live lineage:     {_event_line(c)}")
    if not only_replay and not only_live:
        details.append(
            "both lineages list the same events, so the live store's figure does not match"
            " its own events: rebuild the live store (delete it and restart the service)"
        )
        details.extend(f"contributing: {_event_line(c)}" for c in replayed[:20])
    return Divergence(f"{code} ({where}) differs", details)


def _event_line(c: dict[str, Any]) -> str:
    fields = (
        "seq",
        "type",
        "event_id",
        "occurred_at",
        "quartier",
        "contribution",
        "role",
        "status",
    )
    return " ".join(f"{f}={c[f]}" for f in fields if f in c)


# --- the command line ----------------------------------------------------------------------


def _sequence(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: a log sequence starts at 1")
    return value


def _parser() -> argparse.ArgumentParser:
    settings_help = (
        "Settings come from FPH_* variables as for the services: FPH_NATS_URL (under"
        " `make run`: nats://127.0.0.1:4333), FPH_TIMEZONE (Europe/Paris)."
    )
    parser = argparse.ArgumentParser(
        prog="fph-audit",
        description="Audit the fiche 1.1.6 figures: export the event log, replay it into an"
        " empty store (same code as the live service) and compare with the live service. "
        + settings_help,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def source(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nats-url", help="read the log from this server (default FPH_NATS_URL)")
        p.add_argument(
            "--from-export", type=Path, metavar="FILE", help="read the log from an export file"
        )
        p.add_argument(
            "--database-url",
            help="the empty store to replay into (default: a temporary SQLite file)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("export", help="write the log to a JSON Lines file")
    p.add_argument("output", type=Path, help="file to write ('-' for standard output)")
    p.add_argument("--nats-url", help="the server (default FPH_NATS_URL)")
    p.add_argument("--as-of-seq", type=_sequence, help="stop at this sequence (default: the end)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "replay",
        help="replay the log into an empty store; print the indicators and the digest",
        description="Replay FPH_EVENTS (from the server or an export) into an empty store and"
        " print the indicators of every year (all quartiers, or --quartier) and the digest.",
    )
    source(p)
    p.add_argument(
        "--as-of-seq", type=_sequence, help="replay up to this sequence (default: the end)"
    )
    p.add_argument("--quartier", help="print this quartier's figures (default: all together)")
    p.add_argument("--year", type=int, help="print this year only (default: every year)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser(
        "verify",
        help="compare a replay with the live service",
        description="Replay the log up to --as-of-seq (default: the live service's position)"
        " and compare the digest and all 12 indicators, for every year and quartier, with"
        " the live indicators service. Prints 'identical' (exit 0) or the first divergent"
        " figure and its events (exit 1).",
    )
    source(p)
    p.add_argument(
        "--service-url",
        default="http://127.0.0.1:8004",
        help="the live indicators service (default http://127.0.0.1:8004, as under make run)",
    )
    p.add_argument("--as-of-seq", type=_sequence, help="the sequence to compare at")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = CommonSettings()
    nats_url = getattr(args, "nats_url", None) or settings.nats_url
    progress = not args.quiet
    try:
        if args.command == "export":
            return _export(args, nats_url, progress)
        return asyncio.run(_replay_command(args, nats_url, settings.tz, progress))
    except (OSError, nats.errors.Error) as exc:
        what = str(exc) or type(exc).__name__
        print(f"error: {what} (is the server at {nats_url} running? see --help)", file=sys.stderr)
        return 2


def _export(args: argparse.Namespace, nats_url: str, progress: bool) -> int:
    if str(args.output) == "-":
        count = asyncio.run(export(nats_url, sys.stdout, args.as_of_seq, progress=progress))
    else:
        with args.output.open("w", encoding="utf-8") as out:
            count = asyncio.run(export(nats_url, out, args.as_of_seq, progress=progress))
    print(f"exported {count} events to {args.output}", file=sys.stderr)
    return 0


async def _replay_command(
    args: argparse.Namespace, nats_url: str, tz: ZoneInfo, progress: bool
) -> int:
    with tempfile.TemporaryDirectory(prefix="fph-audit-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'replay.db'}"
        live: httpx.Client | None = None
        until = args.as_of_seq
        if args.command == "verify":
            live = httpx.Client(base_url=args.service_url, timeout=60)
            if until is None:
                health = _get(live, "/health", {})
                until = int(health["log_position"])
        engine = empty_store(url)
        try:
            source = args.from_export
            if source is not None and not source.exists():
                raise SystemExit(f"error: {source}: no such export file")
            seq = await replay(
                engine,
                tz,
                nats_url=nats_url,
                export_file=source,
                until_seq=until,
                progress=progress,
            )
            with Session(engine) as session:
                if live is not None:
                    return _report_verify(live, session, seq, tz)
                _print_replay(args, session, seq)
                return 0
        finally:
            engine.dispose()
            if live is not None:
                live.close()


def _print_replay(args: argparse.Namespace, session: Session, seq: int) -> None:
    digest = store.digest_at(session, seq)
    chosen = [args.year] if args.year else years(session, seq)
    results = []
    for year in chosen:
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
        values = store.indicators(session, quartier=args.quartier, start=start, end=end, as_of=seq)
        results.append({"from": start.isoformat(), "to": end.isoformat(), "indicators": values})
        if not args.json:
            print_table(
                sys.stdout, f"{args.quartier or 'All quartiers'}, {year}", values, seq, digest
            )
    if args.json:
        json.dump(
            {
                "quartier": args.quartier,
                "as_of": {"seq": seq, "digest": digest},
                "periods": results,
            },
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print(f"\nreplayed {seq} events; digest at seq {seq}: {digest}")


def _report_verify(live: httpx.Client, session: Session, seq: int, tz: ZoneInfo) -> int:
    compared, divergence = verify(live, session, seq, tz)
    digest = store.digest_at(session, seq)
    if divergence is None:
        print(f"identical: {compared} figures and the digest at seq {seq} ({digest})")
        return 0
    print(f"DIVERGENT at seq {seq}: {divergence.what}")
    for line in divergence.details:
        print(f"  {line}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
