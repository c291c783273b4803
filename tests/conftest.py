"""Fixtures shared by every layer: a real nats-server per test, databases to run against."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import nats_server
from shared.log import provision

POSTGRES_URL = os.environ.get(
    "FPH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class NatsServer:
    url: str
    port: int
    store_dir: Path
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc = nats_server.start(self.store_dir, self.port)


@pytest.fixture
def nats_srv(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server (from the wheel) with JetStream, on a free port, data under tmp."""
    port = nats_server.free_port()
    store = tmp_path / "nats"
    proc = nats_server.start(store, port, log_file=tmp_path / "nats.log")
    server = NatsServer(f"nats://127.0.0.1:{port}", port, store, proc)
    yield server
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


@pytest.fixture
async def nc(nats_srv: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_srv.url, max_reconnect_attempts=-1)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    """A JetStream context on provisioned streams."""
    ctx = nc.jetstream()
    assert await provision(ctx) == []
    return ctx


def _postgres_reachable() -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


POSTGRES_AVAILABLE = _postgres_reachable()


@contextmanager
def fresh_database(kind_url: str, tmp_path: Path, name: str) -> Iterator[str]:
    """An empty database of the kind ``kind_url`` is: a SQLite file under ``tmp_path``,
    or a new PostgreSQL schema, dropped afterwards."""
    if kind_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    import sqlalchemy as sa

    schema = f"t_{name}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite always; PostgreSQL (a fresh schema) whenever one is reachable."""
    if request.param == "postgresql" and not POSTGRES_AVAILABLE:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    kind = "sqlite://" if request.param == "sqlite" else POSTGRES_URL
    with fresh_database(kind, tmp_path, "service") as url:
        yield url


@pytest.fixture
def new_database(database_url: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """More empty databases of ``database_url``'s kind, by name (one per service instance:
    instances share nothing but NATS)."""
    with ExitStack() as stack:
        yield lambda name: stack.enter_context(fresh_database(database_url, tmp_path, name))
