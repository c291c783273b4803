"""deploy/compose.yaml, read by docker-compose 1.29 (Debian's; no Docker engine needed):
it parses, every container runs one of the project's entry points with settings the
services know, and its pieces (NATS users, databases, ports, Prometheus targets) agree."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from services.funding.settings import FundingSettings
from services.indicators.settings import IndicatorsSettings
from services.intake.settings import IntakeSettings
from services.review.settings import ReviewSettings
from shared import nats_server
from shared.settings import CommonSettings, nats_servers
from tests.deploy.conftest import (
    COMPOSE,
    DEPLOY,
    ENV_EXAMPLE,
    ROOT,
    SERVICES,
    read_env_file,
    run_compose_config,
)

SETTINGS: dict[str, type[BaseSettings]] = {
    "fph-intake": IntakeSettings,
    "fph-review": ReviewSettings,
    "fph-funding": FundingSettings,
    "fph-indicators": IndicatorsSettings,
    "fph-provision": CommonSettings,
}
"""The settings class each entry point reads (its ``__main__``)."""
ONE_SHOT = {"provision", "audit-mirror"}
"""Services that run once at start-up (``fph-nats-auth`` reads no settings: its server is
an argument)."""

NATS_NODES = ("nats-1", "nats-2", "nats-3")
IMAGE = "fph-platform"


def project_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


def ours(service: dict[str, Any]) -> bool:
    """Built from deploy/Dockerfile (the project's image)."""
    return "build" in service and str(service.get("image", "")).startswith(IMAGE)


def principals_users() -> dict[str, str]:
    """NATS user -> role, from deploy/nats/principals.toml (the auth generator's input)."""
    from shared import nats_auth

    path = DEPLOY / "nats" / "principals.toml"
    if not path.exists():
        pytest.skip("deploy/nats/principals.toml does not exist yet")
    return {u.name: u.role for u in nats_auth.load(path).users}


def password_var(user: str) -> str:
    return "FPH_NATS_PASSWORD_" + user.upper().replace("-", "_")


def health_port(service: dict[str, Any]) -> int:
    test = " ".join(service["healthcheck"]["test"])
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", test)
    assert found, test
    return int(found.group(1))


# --- (a) docker-compose parses it ---------------------------------------------------------


def test_docker_compose_config_accepts_the_file() -> None:
    done = run_compose_config("--quiet")
    assert done.returncode == 0, done.stderr
    # A variable missing from .env.example would be replaced by "" with a warning.
    assert "is not set" not in done.stderr, done.stderr


def test_the_expected_services(compose_config: dict[str, Any]) -> None:
    assert set(compose_config["services"]) >= {
        *NATS_NODES, "provision", "postgres", *SERVICES, "prometheus", "grafana",
    }  # fmt: skip


# --- (b) entry points and settings --------------------------------------------------------


def test_every_container_of_our_image_runs_a_project_entry_point(
    compose_config: dict[str, Any],
) -> None:
    scripts = project_scripts()
    wheel_binaries = {"nats-server": nats_server.binary()}
    for name, service in compose_config["services"].items():
        if not ours(service):
            continue
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert Path(service["build"]["context"]) == ROOT, name
        command = service["command"]
        assert isinstance(command, list) and command, f"{name}: command as a list"
        program = command[0]
        if program in wheel_binaries:
            assert wheel_binaries[program].exists(), program
            continue
        assert program in scripts, f"{name} runs {program!r}, not a [project.scripts] entry"
        if program == "fph-nats-auth":
            assert name in ONE_SHOT and "--provision-audit-mirror" in command, name
            continue
        assert program in SETTINGS, f"{name}: which settings does {program} read?"


def test_settings_are_ones_the_services_know_and_parse(
    compose_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = set()
    for name, service in compose_config["services"].items():
        if not ours(service) or service["command"][0] not in SETTINGS:
            continue
        cls = SETTINGS[service["command"][0]]
        env: dict[str, str] = {k: str(v) for k, v in service.get("environment", {}).items()}
        fph = {k: v for k, v in env.items() if k.startswith("FPH_")}
        unknown = [k for k in fph if k[len("FPH_") :].lower() not in cls.model_fields]
        assert not unknown, f"{name}: {unknown} are not settings of {cls.__name__}"
        assert "FPH_NATS_URL" in fph, name
        # The values parse (JSON of FPH_SOURCE_TYPES, the committee rule's name, ports...).
        for key in list(os.environ):
            if key.startswith("FPH_"):
                monkeypatch.delenv(key)
        for key, value in fph.items():
            monkeypatch.setenv(key, value)
        cls()
        checked.add(name)
    assert checked >= {"provision", *SERVICES}


def test_services_match_make_run(compose_config: dict[str, Any]) -> None:
    """The four services as `make run` starts them: their entry point, an HTTP port open
    to the other containers, its own PostgreSQL database, and its own NATS user."""
    services = compose_config["services"]
    env_example = read_env_file(ENV_EXAMPLE)
    init_script = (DEPLOY / "postgres" / "init-databases.sh").read_text(encoding="utf-8")
    default_databases = re.search(r"FPH_DATABASES:-([a-z_ ]+)\}", init_script)
    assert default_databases, "init-databases.sh: FPH_DATABASES default list"
    databases = default_databases.group(1).split()
    assert databases == list(SERVICES)
    for name in SERVICES:
        service = services[name]
        env = service["environment"]
        prefix = f"FPH_{name.upper()}_"
        assert service["command"] == [f"fph-{name}"]
        assert env[f"{prefix}HOST"] == "0.0.0.0", "listen beyond the container's loopback"
        port = int(env[f"{prefix}PORT"])
        assert health_port(service) == port
        assert any(str(p).endswith(f":{port}:{port}/tcp") or str(p).endswith(f":{port}:{port}")
                   for p in service.get("ports", [])), service.get("ports")  # fmt: skip
        db = urlsplit(env[f"{prefix}DATABASE_URL"])
        assert db.scheme == "postgresql+psycopg"
        assert db.hostname == "postgres" and db.port == 5432
        assert db.path.lstrip("/") == name and name in databases
        assert unquote(db.password or "") == env_example["POSTGRES_PASSWORD"]
        assert db.username == services["postgres"]["environment"]["POSTGRES_USER"]
        urls = nats_servers(env["FPH_NATS_URL"])
        assert sorted(urlsplit(u).hostname or "" for u in urls) == list(NATS_NODES)
        for url in urls:
            parts = urlsplit(url)
            assert parts.scheme == "nats" and parts.port == 4222
            assert parts.username == name, f"{name} connects as its own NATS user"
            assert parts.password == env_example[password_var(name)]
        depends = service["depends_on"]
        assert depends["provision"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        for node in NATS_NODES:
            assert depends[node]["condition"] == "service_healthy"


def test_provision_creates_replicated_streams_as_an_admin(compose_config: dict[str, Any]) -> None:
    provision = compose_config["services"]["provision"]
    assert provision["command"] == ["fph-provision", "--replicas", "3"]
    assert provision.get("restart") == "no"
    users = principals_users()
    for url in nats_servers(provision["environment"]["FPH_NATS_URL"]):
        user = urlsplit(url).username
        assert user and users.get(user) == "admin", f"provision connects as {user!r}"
    for node in NATS_NODES:
        assert provision["depends_on"][node]["condition"] == "service_healthy"


def test_everything_long_running_has_a_healthcheck(compose_config: dict[str, Any]) -> None:
    for name, service in compose_config["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name}: no healthcheck"
        assert service.get("restart") == "unless-stopped", name
    nodes = compose_config["services"]
    for node in NATS_NODES:
        assert "http://127.0.0.1:8222/healthz" in " ".join(nodes[node]["healthcheck"]["test"])
    assert nodes["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert nodes["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_nats_nodes(compose_config: dict[str, Any]) -> None:
    """Each node: the wheel's nats-server on deploy/nats/cluster.conf, its own name and data
    volume, and every password auth.conf reads."""
    users = principals_users()
    cluster_conf = (DEPLOY / "nats" / "cluster.conf").read_text(encoding="utf-8")
    assert "store_dir: /data/jetstream" in cluster_conf
    for node in NATS_NODES:
        assert f"nats-route://{node}:6222" in cluster_conf
    auth_conf = DEPLOY / "nats" / "auth.conf"
    referenced = (
        set(re.findall(r"\$(FPH_NATS_PASSWORD_\w+)", auth_conf.read_text(encoding="utf-8")))
        if auth_conf.exists()
        else set()
    )
    wanted = {password_var(u) for u in users} | referenced
    env_example = read_env_file(ENV_EXAMPLE)
    assert wanted <= set(env_example), f"missing in .env.example: {wanted - set(env_example)}"
    names = set()
    for node in NATS_NODES:
        service = compose_config["services"][node]
        assert service["command"] == ["nats-server", "--config", "/etc/nats/cluster.conf"]
        env = service["environment"]
        names.add(env["NATS_SERVER_NAME"])
        passwords = {k for k in env if k.startswith("FPH_NATS_PASSWORD_")}
        assert passwords == wanted, f"{node}: {passwords ^ wanted}"
        for var in passwords:
            assert env[var] == env_example[var]
        volumes = [str(v) for v in service["volumes"]]
        assert f"{DEPLOY / 'nats'}:/etc/nats:ro" in volumes
        assert f"{node}-data:/data:rw" in volumes
        assert service["stop_signal"] == "SIGUSR2"
    assert names == set(NATS_NODES)


def test_env_example_passwords_are_usable() -> None:
    """Letters and digits, starting with a letter: unescaped in URLs, and read as strings
    by nats-server's configuration parser (shared/nats_auth.PASSWORD_RE)."""
    from shared.nats_auth import PASSWORD_RE

    env = read_env_file(ENV_EXAMPLE)
    secrets = {k: v for k, v in env.items() if "PASSWORD" in k}
    assert "POSTGRES_PASSWORD" in secrets and "GRAFANA_ADMIN_PASSWORD" in secrets
    for key, value in secrets.items():
        assert PASSWORD_RE.match(value), f"{key}={value}"


def test_prometheus_scrapes_every_service(compose_config: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    for name in SERVICES:
        port = compose_config["services"][name]["environment"][f"FPH_{name.upper()}_PORT"]
        assert f"{name}:{port}" in targets[name]
    prometheus = compose_config["services"]["prometheus"]
    assert f"{DEPLOY / 'prometheus'}:/etc/prometheus:ro" in [str(v) for v in prometheus["volumes"]]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_is_provisioned(compose_config: dict[str, Any]) -> None:
    grafana = compose_config["services"]["grafana"]
    volumes = [str(v) for v in grafana["volumes"]]
    assert f"{DEPLOY / 'grafana' / 'provisioning'}:/etc/grafana/provisioning:ro" in volumes
    assert f"{DEPLOY / 'grafana' / 'dashboards'}:/etc/grafana/dashboards:ro" in volumes
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "fph.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).exists()
    assert (
        grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == read_env_file(ENV_EXAMPLE)["GRAFANA_ADMIN_PASSWORD"]
    )


def test_postgres_gets_the_init_script(compose_config: dict[str, Any]) -> None:
    postgres = compose_config["services"]["postgres"]
    script = DEPLOY / "postgres" / "init-databases.sh"
    assert f"{script}:/docker-entrypoint-initdb.d/init-databases.sh:ro" in [
        str(v) for v in postgres["volumes"]
    ]
    assert script.stat().st_mode & 0o111, "executable: the entrypoint runs it, not sources it"


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "pip install --no-deps ." in dockerfile
    copied = set(re.findall(r"^COPY (\S+)", dockerfile, re.M))
    assert {"shared", "services"} <= copied
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[ignore.index("*") + 1 :][:4] == [
        "!pyproject.toml", "!README.md", "!shared", "!services",
    ]  # fmt: skip
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in packages) == ["services", "shared"]


def test_compose_file_names_only_env_example_variables() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)", text))
    defined = set(read_env_file(ENV_EXAMPLE))
    assert used <= defined, f"not in deploy/.env.example: {sorted(used - defined)}"


def test_env_example_agrees_with_the_nats_principals() -> None:
    """Every password the auth generator's example lists, and the sources its principals
    allow (FPH_SOURCES), are in deploy/.env.example."""
    from shared import nats_auth

    principals_path = DEPLOY / "nats" / "principals.toml"
    if not principals_path.exists():
        pytest.skip("deploy/nats/principals.toml does not exist yet")
    env = read_env_file(ENV_EXAMPLE)
    generated = DEPLOY / "nats" / "auth.env.example"
    if generated.exists():
        wanted = {k for k in read_env_file(generated) if k.startswith("FPH_NATS_PASSWORD_")}
        assert wanted <= set(env), f"missing in .env.example: {sorted(wanted - set(env))}"
    sources = nats_auth.load(principals_path).sources
    assert set(env["FPH_SOURCES"].split(",")) == set(sources)
