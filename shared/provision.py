"""``fph-provision``: create the contract's streams on a NATS server, report differences."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.js.errors import ServiceUnavailableError

from shared.log import ConfigDifference, provision
from shared.settings import CommonSettings, nats_servers

ATTEMPTS = 5


async def _provision(nc: NATS, replicas: int) -> list[ConfigDifference]:
    """``provision``, tried again on a JetStream API timeout.

    On a cluster that has just started, a stream can be created while the answer to the
    request is lost (route connections are still being set up), or the meta leader is
    being elected. Provisioning only creates what is missing, so trying again is safe.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await provision(nc.jetstream(), replicas=replicas)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError):
            if attempt == ATTEMPTS:
                raise
            print(f"JetStream did not answer (attempt {attempt}); trying again", file=sys.stderr)
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def _run(url: str, replicas: int, check: bool) -> int:
    nc = await nats.connect(nats_servers(url), connect_timeout=5, max_reconnect_attempts=3)
    try:
        differences = await _provision(nc, replicas)
    finally:
        await nc.drain()
    for diff in differences:
        print(f"DIFFERENCE: {diff}", file=sys.stderr)
    if not differences:
        print(f"streams FPH_EVENTS, FPH_INBOX, FPH_RECEIPTS, FPH_REJECTED ready on {url}")
    return 1 if differences and check else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fph-provision",
        description="Create the four streams of the contract (FPH_EVENTS, FPH_INBOX,"
        " FPH_RECEIPTS, FPH_REJECTED) if missing. An existing stream whose settings differ"
        " is reported, never changed.",
    )
    parser.add_argument(
        "--nats-url",
        default=CommonSettings().nats_url,
        help="NATS URL, or several of one cluster comma-separated (default: FPH_NATS_URL)",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="stream replicas (3 on a clustered deployment)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when an existing stream differs from the contract",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(_run(args.nats_url, args.replicas, args.check)))


if __name__ == "__main__":
    main()
