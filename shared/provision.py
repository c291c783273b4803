"""``fph-provision``: create the contract's streams on a NATS server, report differences."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import nats

from shared.log import provision
from shared.settings import CommonSettings


async def _run(url: str, replicas: int, check: bool) -> int:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        differences = await provision(nc.jetstream(), replicas=replicas)
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
        "--nats-url", default=CommonSettings().nats_url, help="NATS URL (default: FPH_NATS_URL)"
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
