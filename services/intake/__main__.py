"""``python -m services.intake`` (or ``fph-intake``): run the intake service."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from services.intake.app import create_app
from services.intake.settings import IntakeSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fph-intake",
        description="Intake service: decides EnvieRecorded, EnvieClosed and PorteurRegistered"
        " submissions from FPH_INBOX, answers submissions no service owns, and serves the city"
        " desk's HTTP API. Settings come from FPH_* environment variables"
        " (FPH_NATS_URL, FPH_QUARTIERS, FPH_SOURCES, FPH_INTAKE_DATABASE_URL, FPH_INTAKE_PORT…).",
    )
    parser.add_argument("--host", help="HTTP host (default FPH_INTAKE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default FPH_INTAKE_PORT or 8001)")
    args = parser.parse_args(argv)
    settings = IntakeSettings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.intake_host,
        port=args.port or settings.intake_port,
        log_level="info",
    )


if __name__ == "__main__":
    main()
