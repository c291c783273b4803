"""Just enough PromQL reading for the deployment tests: the metric names an expression
selects, and the series names a /metrics exposition offers."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "offset", "bool", "atan2", "inf", "nan",
    }
)  # fmt: skip
PROMETHEUS_OWN = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"})
"""Series Prometheus makes itself (not exported by the services)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_NUMBER_UNIT = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)\b")


def metric_names(expr: str) -> set[str]:
    """The metric (or recorded series) names ``expr`` selects: identifiers that are not
    functions, aggregations, keywords, label names or values, ranges or template
    variables (Grafana's ``$quartier``, ``$__rate_interval``)."""
    text = _VARIABLE.sub("x", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _NUMBER_UNIT.sub(" ", text)
    while True:
        stripped = _GROUPING.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics page offers: the samples present, and for every family
    (also one without samples yet: its HELP and TYPE lines) the names its type makes."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(f"{family.name}{suffix}" for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names
