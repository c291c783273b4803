"""deploy/prometheus: promtool accepts the configuration and the rules, the alerts' unit
tests pass, every series the rules read is exported by the services, and a real
Prometheus (Debian's) scraping the services started by ``fph-run`` records them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from shared.nats_server import free_port
from shared.settings import CommonSettings
from tests.deploy.conftest import DEPLOY, SERVICES, Platform, tool
from tests.deploy.promql import PROMETHEUS_OWN, exposed_names, metric_names

PROMETHEUS_DIR = DEPLOY / "prometheus"


def promtool(*args: str, timeout: float = 180) -> None:
    done = subprocess.run(
        [tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROMETHEUS_DIR,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(
        (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    )["groups"]
    return groups


def recorded() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


# --- (c) promtool ---------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    promtool("check", "config", "prometheus.yml")


def test_promtool_check_rules() -> None:
    promtool("check", "rules", "alerts.yml")


def test_promtool_test_rules_every_alert_fires() -> None:
    """alerts_test.yml: each alert fires on a crafted series (and stays quiet beside it)."""
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == alerts, f"alerts without a firing test: {alerts - fired}"
    promtool("test", "rules", "alerts_test.yml")


# --- against the real services --------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(platform: Platform) -> set[str]:
    """Every series name the four services' /metrics offer (after some activity)."""
    names: set[str] = set()
    for service in SERVICES:
        names |= exposed_names(platform.metrics(service))
    return names


def test_rules_read_only_exported_series(exported: set[str]) -> None:
    wanted = {
        name: rule.get("alert") or rule.get("record")
        for group in rule_groups()
        for rule in group["rules"]
        for name in metric_names(rule["expr"])
    }
    missing = {
        name: rule
        for name, rule in wanted.items()
        if name not in exported | recorded() | PROMETHEUS_OWN
    }
    assert not missing, f"series no service exports: {missing}"


def prometheus_config(platform: Platform, own_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the compose targets replaced by the runner's
    ports, and a 1-second scrape and evaluation interval; nothing else changed."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    for job in config["scrape_configs"]:
        job.pop("scrape_timeout", None)
        for static in job["static_configs"]:
            targets = []
            for target in static["targets"]:
                host, _, port = target.partition(":")
                if host in platform.ports:
                    assert port, target
                    targets.append(f"127.0.0.1:{platform.ports[host]}")
                else:
                    targets.append(f"127.0.0.1:{own_port}")
            static["targets"] = targets
    for group in config.get("rule_files", []):
        assert (PROMETHEUS_DIR / group).exists()
    return config


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        r = httpx.get(f"{self.base}{path}", params=params, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, what: str, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            assert time.monotonic() < deadline, f"{what}: no result for {expr} after {timeout}s"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    # alerts.yml as it is, but every group evaluated each second (a group's first
    # evaluation may otherwise wait up to its interval: 5 minutes).
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        group["interval"] = "1s"
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    conf = tmp / "prometheus.yml"
    conf.write_text(yaml.safe_dump(prometheus_config(platform, port)))
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp / "prometheus.log").read_text()
            time.sleep(0.2)
        yield Prometheus(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_prometheus_records_the_indicators(prometheus: Prometheus) -> None:
    """(f) The fiche per quartier reaches Prometheus: fph_indicator for every configured
    quartier and every code (the mechanisms apart), from the indicators job."""
    result = prometheus.wait_for("fph_indicator", "indicators scraped")
    quartiers = set(CommonSettings().quartiers)
    deadline = time.monotonic() + 20
    while {r["metric"]["quartier"] for r in result} != quartiers:
        assert time.monotonic() < deadline, result
        time.sleep(0.5)
        result = prometheus.query("fph_indicator")
    assert {r["metric"]["job"] for r in result} == {"indicators"}
    codes = {r["metric"]["code"] for r in result if r["metric"]["quartier"] == "QN09301M"}
    assert {"envies_recueillies", "montant_attribue_cents", "projets_developpes"} <= codes
    assert "mecanismes_mobilisation" not in codes  # its own family, one series per mechanism
    mechanisms = prometheus.wait_for("fph_indicator_mobilisation", "mechanisms scraped")
    assert len({r["metric"]["mechanism"] for r in mechanisms}) == 9


def test_prometheus_scrapes_every_service(prometheus: Prometheus) -> None:
    deadline = time.monotonic() + 30
    while True:
        up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
        if all(up.get(s) == "1" for s in SERVICES):
            break
        assert time.monotonic() < deadline, up
        time.sleep(0.5)


def test_the_rules_evaluate_on_real_series(prometheus: Prometheus) -> None:
    """Every rule of alerts.yml evaluates without error on the scraped series, and the
    recording rule yields each service's lag (0 once the platform is idle)."""
    lags = prometheus.wait_for("fph:projection_lag:seqs", "recording rule", timeout=30)
    deadline = time.monotonic() + 30
    while {r["metric"]["service"] for r in lags} != set(SERVICES):
        assert time.monotonic() < deadline, lags
        time.sleep(0.5)
        lags = prometheus.query("fph:projection_lag:seqs")
    deadline = time.monotonic() + 30
    while True:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules):
            break
        assert time.monotonic() < deadline, "not every rule group evaluated yet"
        time.sleep(0.5)
    errors = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not errors, errors
    assert {g["file"].rsplit("/", 1)[-1] for g in groups} == {"alerts.yml"}


def test_the_dashboard_queries_run(prometheus: Prometheus) -> None:
    """Every query of the Grafana dashboard is valid PromQL that Prometheus runs (with the
    template variables as Grafana fills them), and the fiche's queries return series."""
    from tests.deploy.test_grafana import dashboard_queries

    for title, expr in dashboard_queries():
        filled = (
            expr.replace('"$quartier"', '"QN09301M"')
            .replace("$quartier", ".*")
            .replace("$__rate_interval", "1m")
        )
        result = prometheus.query(filled)
        if "fph_indicator" in expr:
            assert result, f"{title}: {filled} returned nothing"
