"""The command line of every service: ``python -m services.<name>`` (uvicorn, logging)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI


def serve(
    name: str,
    description: str,
    settings: Any,
    create_app: Callable[[Any], FastAPI],
    argv: list[str] | None = None,
) -> None:
    """Parse ``--host/--port`` (defaults from ``FPH_<NAME>_HOST/PORT``) and run the app."""
    host_default = getattr(settings, f"{name}_host")
    port_default = getattr(settings, f"{name}_port")
    parser = argparse.ArgumentParser(prog=f"fph-{name}", description=description)
    parser.add_argument(
        "--host",
        default=host_default,
        help=f"HTTP host (default FPH_{name.upper()}_HOST or {host_default})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=port_default,
        help=f"HTTP port (default FPH_{name.upper()}_PORT or {port_default})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
