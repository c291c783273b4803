"""The whole system as `make run` starts it (`python -m shared.runner`), on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shared.nats_server import distinct_free_ports

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("intake", "review", "funding", "indicators")


@dataclass
class RunningSystem:
    nats_url: str
    urls: dict[str, str]
    """Each service's base URL, by name."""
    env: dict[str, str]
    """The environment the runner was started with (ports, PYTHONUNBUFFERED...)."""
    log: Path
    proc: subprocess.Popen[bytes]
    exit_code: int | None = field(default=None)


@contextmanager
def running_system(
    tmp_path: Path, defaults: bool = True, extra_env: dict[str, str] | None = None
) -> Iterator[RunningSystem]:
    """Start the runner; yield once it prints "FPH platform running"; then Ctrl-C it and
    check it stopped cleanly (exit code 0). ``defaults``: drop every FPH_* variable from
    the environment, so the services run on the runner's defaults, as `make run`;
    ``extra_env``: variables to set on top (e.g. the services' database URLs)."""
    nats_port, http_port, *service_ports = distinct_free_ports(2 + len(SERVICES))
    ports = dict(zip(SERVICES, service_ports, strict=True))
    env = {k: v for k, v in os.environ.items() if not (defaults and k.startswith("FPH_"))}
    env.update(
        {
            "FPH_RUN_NATS_PORT": str(nats_port),
            **{f"FPH_{name.upper()}_PORT": str(port) for name, port in ports.items()},
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.runner", "--data-dir", str(tmp_path / "var"),
             "--nats-http-port", str(http_port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    system = RunningSystem(
        nats_url=f"nats://127.0.0.1:{nats_port}",
        urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        env=env,
        log=log,
        proc=proc,
    )
    try:
        deadline = time.monotonic() + 90
        while b"FPH platform running" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield system
    finally:
        proc.send_signal(signal.SIGINT)
        system.exit_code = proc.wait(timeout=60)
    assert system.exit_code == 0, log.read_text()
    assert "stopped." in log.read_text()
