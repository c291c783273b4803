"""deploy/grafana: the provisioning files and the dashboard parse, the dashboard uses the
provisioned datasource, and every series its queries read is exported by the services (a
real /metrics scrape of the four services started by ``fph-run``), recorded by
alerts.yml, or made by Prometheus itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY, SERVICES, Platform
from tests.deploy.promql import PROMETHEUS_OWN, exposed_names, metric_names
from tests.deploy.test_prometheus import recorded

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "fiche.json"
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.+),)?\s*(?P<label>\w+)\s*\)$")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in items:
        out.append(panel)
        out += panels(panel.get("panels", []))
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    return [
        (p["title"], t["expr"]) for p in panels(dashboard()["panels"]) for t in p.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str]]:
    """(variable, the series expression of its label_values query)."""
    out = []
    for var in dashboard()["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = LABEL_VALUES.match(query.strip())
        assert found, f"variable {var['name']}: {query}"
        out.append((var["name"], found.group("expr") or ""))
    return out


def test_provisioning_files_parse_and_point_at_the_dashboards() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/fph.yml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    uids = {source["uid"]}
    data = dashboard()
    assert data["uid"] and data["title"]
    for panel in panels(data["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_dashboard_shows_the_fiche_and_the_pipeline() -> None:
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for name in ("fph_indicator", "fph_indicator_mobilisation", "fph_log_position",
                 "fph:projection_lag:seqs", "fph_submissions_refused_total", "up"):  # fmt: skip
        assert re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", exprs), name
    assert [name for name, _ in variable_queries()] == ["quartier"]
    repeated = [p for p in panels(dashboard()["panels"]) if p.get("repeat") == "quartier"]
    assert repeated, "a panel per quartier"
    ids = [p["id"] for p in panels(dashboard()["panels"])]
    assert len(ids) == len(set(ids))


def test_every_dashboard_series_is_exported(platform: Platform) -> None:
    exported: set[str] = set()
    for service in SERVICES:
        exported |= exposed_names(platform.metrics(service))
    known = exported | recorded() | PROMETHEUS_OWN
    used = {
        name: title
        for title, expr in [*dashboard_queries(), *variable_queries()]
        for name in metric_names(expr)
    }
    assert used, "no query found"
    missing = {name: title for name, title in used.items() if name not in known}
    assert not missing, f"series no service exports: {missing}"


def test_dashboard_file_is_the_one_grafana_opens_first() -> None:
    assert Path(DASHBOARD).name == "fiche.json"
