"""Fixtures of the deployment tests (deploy/): the compose file as docker-compose reads it,
and the platform started by ``fph-run`` on free ports (on PostgreSQL databases made by
deploy/postgres/init-databases.sh when a PostgreSQL answers, as in compose; else SQLite).

There is no Docker engine here: compose is checked statically (``docker-compose config``,
Debian's docker-compose 1.29) and every piece it mounts is run for real outside Docker
(nats-server -t, promtool, prometheus, the init script on psql, the services by fph-run).
``make test`` installs the Debian tools first (``make tools``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import POSTGRES_AVAILABLE, POSTGRES_URL
from tests.running_system import running_system

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SERVICES = ("intake", "review", "funding", "indicators")


def tool(name: str) -> str:
    """The path of a Debian tool the deployment tests need, or a clear failure."""
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} not found: `make tools` (run by `make test`) installs it from Debian"
            " (packages prometheus and docker-compose)"
        )
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_env() -> dict[str, str]:
    """The process environment without any variable the compose file or the env file
    names: what docker-compose interpolates must come from deploy/.env.example alone."""
    names = set(read_env_file(ENV_EXAMPLE))
    return {
        k: v
        for k, v in os.environ.items()
        if k not in names and not k.startswith(("FPH_", "POSTGRES_", "GRAFANA_", "COMPOSE_"))
    }


def run_compose_config(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("docker-compose"),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ENV_EXAMPLE),
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=compose_env(),
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def compose_config() -> dict[str, Any]:
    """deploy/compose.yaml as docker-compose resolves it (anchors merged, variables
    interpolated from deploy/.env.example, paths made absolute)."""
    done = run_compose_config()
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


# --- the platform, started by the runner --------------------------------------------------


@dataclass
class Platform:
    ports: dict[str, int]
    nats_url: str
    log: Path

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def metrics(self, service: str) -> str:
        r = httpx.get(f"{self.url(service)}/metrics", timeout=30)
        r.raise_for_status()
        return r.text


def _psql(url: str, *args: str, env: dict[str, str] | None = None) -> None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    pg_env = {
        **os.environ,
        **(env or {}),
        "PGHOST": u.host or "127.0.0.1",
        "PGPORT": str(u.port or 5432),
        "PGUSER": u.username or "postgres",
        "PGDATABASE": u.database or "postgres",
        "POSTGRES_USER": u.username or "postgres",
        "POSTGRES_DB": u.database or "postgres",
    }
    if u.password:
        pg_env["PGPASSWORD"] = u.password
    done = subprocess.run(list(args), env=pg_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def init_databases(names: list[str]) -> None:
    """Run deploy/postgres/init-databases.sh against the test PostgreSQL."""
    _psql(
        POSTGRES_URL,
        "bash",
        str(DEPLOY / "postgres" / "init-databases.sh"),
        env={"FPH_DATABASES": " ".join(names)},
    )


def drop_databases(names: list[str]) -> None:
    for name in names:
        _psql(
            POSTGRES_URL, "psql", "-v", "ON_ERROR_STOP=1", "-c",
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )  # fmt: skip


def database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _activity(p: Platform) -> None:
    """Enough to give every labelled series a sample: the README's project walk (envelope,
    envie, porteur, project, decision, grant, completion) and one refused envie."""
    from tests.e2e.test_run import walk_a_project

    walk_a_project(p.url("intake"), p.url("review"), p.url("funding"))
    r = httpx.post(
        f"{p.url('intake')}/envies",
        json={"quartier": "QN00000X", "channel": "autre", "theme": "autre", "summary": "x"},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    # The indicators service follows the log: wait until it has applied everything.
    deadline = time.monotonic() + 30
    while httpx.get(f"{p.url('indicators')}/health", timeout=5).json()["lag"]:
        assert time.monotonic() < deadline, "indicators did not catch up with the log"
        time.sleep(0.1)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """``fph-run`` (what ``make run`` starts) on free ports, after a little activity; on
    PostgreSQL databases made by deploy/postgres/init-databases.sh when one is reachable."""
    tmp = tmp_path_factory.mktemp("platform")
    env: dict[str, str] = {}
    databases: list[str] = []
    if POSTGRES_AVAILABLE and shutil.which("psql"):
        prefix = f"fph_deploy_{uuid.uuid4().hex[:8]}"
        databases = [f"{prefix}_{name}" for name in SERVICES]
        init_databases(databases)
        for name, db in zip(SERVICES, databases, strict=True):
            env[f"FPH_{name.upper()}_DATABASE_URL"] = database_url(db)
    try:
        with running_system(tmp, extra_env=env) as system:
            ports = {name: int(url.rsplit(":", 1)[1]) for name, url in system.urls.items()}
            p = Platform(ports, system.nats_url, system.log)
            _activity(p)
            yield p
    finally:
        if databases:
            drop_databases(databases)
