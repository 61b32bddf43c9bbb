"""The Grafana dashboard in docs/grafana/ asks only for metrics the bot exports.

A dashboard is checked by nothing else: a renamed metric or a typo in a panel shows as
"No data" on the operator's screen, long after the change. So every PromQL expression in
the dashboard is parsed with a real PromQL parser and each metric and label it names is
looked up in the registry of ``bot.server.metrics.Metrics``, the one the ops endpoint serves.
The compose profile that starts Prometheus and Grafana is checked by reading it (Docker
has no engine on the test machines): the files it mounts exist and fit together.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bot.server.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "docs" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kontext-bot.json"
COMPOSE = ROOT / "docker-compose.yml"

# Grafana's built-in interval variables, replaced by a duration before parsing, as
# Grafana itself does before sending the query to Prometheus.
GRAFANA_DURATIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1d",
}
# Labels Prometheus attaches to every scraped series (the target's, not the bot's).
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def exported_series() -> dict[str, set[str]]:
    """Series names the bot's registry exposes, each with the label names it carries.

    Read from the real registry: a counter ``x`` is scraped as ``x_total``, a histogram
    as ``x_bucket`` (with ``le``), ``x_sum`` and ``x_count``. The label names come from
    the metric objects themselves, since a labelled metric has no samples until used.
    """
    metrics = Metrics()
    labels_of: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            # prometheus-client keeps the declared label names here (no public accessor).
            labels_of[value._name] = set(value._labelnames)
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        assert family.type in SUFFIXES, f"dashboard check does not know {family.type} metrics"
        labels = labels_of[family.name]
        for suffix in SUFFIXES[family.type]:
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def dashboard_expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every query target, rows' nested panels included."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def grafana_to_promql(expr: str) -> str:
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    leftover = re.search(r"\$\{?\w+", expr)
    assert leftover is None, f"unknown Grafana variable {leftover.group(0)} in {expr!r}"
    return expr


def problems_in(dashboard: dict[str, Any], series: dict[str, set[str]]) -> list[str]:
    """Every metric or label an expression names that the bot does not export."""
    problems: list[str] = []
    for title, raw in dashboard_expressions(dashboard):
        try:
            expr = promql_parser.parse(grafana_to_promql(raw))
        except ValueError as exc:
            problems.append(f"{title}: does not parse ({exc}): {raw}")
            continue
        names: list[str] = []
        used_labels: set[str] = set()

        def visit(node: object, names: list[str] = names, used: set[str] = used_labels) -> None:
            if isinstance(node, promql_parser.VectorSelector):
                matchers = node.matchers.matchers
                names.extend(m.value for m in matchers if m.name == "__name__")
                if node.name is not None:
                    names.append(node.name)
                used.update(m.name for m in matchers if m.name != "__name__")
            elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
                used.update(node.modifier.labels)
            elif (
                isinstance(node, promql_parser.BinaryExpr)
                and node.modifier is not None
                and node.modifier.matching is not None
            ):
                used.update(node.modifier.matching.labels)

        promql_parser.walk(expr, visit, None)
        if not names:
            problems.append(f"{title}: names no metric: {raw}")
        known_labels = set(TARGET_LABELS)
        for name in names:
            if name not in series:
                problems.append(f"{title}: {name} is not a metric the bot exports")
            else:
                known_labels |= series[name]
        for label in sorted(used_labels - known_labels):
            problems.append(f"{title}: label {label!r} is on none of {names}")
    return problems


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    return exported_series()


@pytest.fixture
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_registry_names_follow_prometheus_suffixes(series: dict[str, set[str]]) -> None:
    # What the check compares against is what /metrics serves (docs/operations.md's table).
    assert "kontext_requests_total" in series
    assert series["kontext_requests_total"] == {"platform", "outcome"}
    assert {"kontext_provider_latency_seconds_bucket", "kontext_provider_latency_seconds_sum"} <= (
        set(series)
    )
    assert "le" in series["kontext_provider_latency_seconds_bucket"]
    assert "kontext_queue_depth" in series
    assert "kontext_requests" not in series


def test_every_dashboard_expression_names_exported_metrics(
    dashboard: dict[str, Any], series: dict[str, set[str]]
) -> None:
    expressions = list(dashboard_expressions(dashboard))
    assert len(expressions) >= 10
    assert problems_in(dashboard, series) == []


def test_dashboard_covers_what_an_operator_asks(dashboard: dict[str, Any]) -> None:
    text = " ".join(expr for _title, expr in dashboard_expressions(dashboard))
    for needed in (
        "kontext_jobs_finished_total",  # jobs by outcome
        "histogram_quantile(",  # latency percentiles
        "kontext_provider_latency_seconds_bucket",
        'kind=~"provider_unavailable',  # provider errors
        "kontext_queue_depth",
        "kontext_credits_charged_total",  # spend
    ):
        assert needed in text, needed


def test_a_misspelled_metric_is_caught(
    dashboard: dict[str, Any], series: dict[str, set[str]]
) -> None:
    broken = copy.deepcopy(dashboard)
    target = next(
        t
        for p in broken["panels"]
        for t in p.get("targets", [])
        if "kontext_credits_charged_total" in t["expr"]
    )
    target["expr"] = target["expr"].replace(
        "kontext_credits_charged_total", "kontext_credit_charged_total"
    )
    problems = problems_in(broken, series)
    assert len(problems) == 1
    assert "kontext_credit_charged_total is not a metric the bot exports" in problems[0]


def test_a_counter_without_its_suffix_and_a_wrong_label_are_caught(
    dashboard: dict[str, Any], series: dict[str, set[str]]
) -> None:
    broken = copy.deepcopy(dashboard)
    targets = [t for p in broken["panels"] for t in p.get("targets", [])]
    targets[0]["expr"] = "sum(rate(kontext_errors[5m]))"
    targets[1]["expr"] = "sum by (reason) (rate(kontext_errors_total[$__rate_interval]))"
    targets[2]["expr"] = "sum(rate(kontext_errors_total[$__rate_interval]"
    problems = problems_in(broken, series)
    assert len(problems) == 3, problems
    assert "kontext_errors is not a metric" in problems[0]
    assert "label 'reason'" in problems[1]
    assert "does not parse" in problems[2]


def test_panels_use_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of the service's bind mounts (short syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def test_monitoring_profile_is_optional_and_mounts_files_that_exist() -> None:
    services = compose()["services"]
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"bot", "postgres"}, "a plain `docker compose up` must stay as it was"
    monitoring = {n for n, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    for name in monitoring:
        mounts = bind_mounts(services[name])
        assert mounts, name
        for source in mounts.values():
            assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
        for volume in services[name]["volumes"]:
            named = volume.split(":")[0]
            if not named.startswith((".", "/")):
                assert named in compose()["volumes"], named
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), "monitoring is not for the internet"


def test_compose_pieces_fit_together() -> None:
    services = compose()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]

    # Prometheus reads the config the file mounts, and scrapes the bot's ops port.
    prom_mounts = bind_mounts(prometheus)
    config_flag = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert prom_mounts[config_path] == "./docs/grafana/prometheus.yml"
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["bot"] and "bot" in services
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"KONTEXT_OPS__PORT={sd['port']}" in dockerfile
    assert "KONTEXT_OPS__ENABLED=true" in dockerfile

    # Grafana: both provisioning folders mounted where Grafana looks, the dashboard
    # folder where the provider says, the datasource pointing at the prometheus service.
    mounts = bind_mounts(grafana)
    for kind in ("datasources", "dashboards"):
        host = mounts[f"/etc/grafana/provisioning/{kind}"]
        assert list((COMPOSE.parent / host).glob("*.yml")), host
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/kontext-bot.yml").read_text())
    (entry,) = provider["providers"]
    dashboards_host = mounts[entry["options"]["path"]]
    assert (COMPOSE.parent / dashboards_host / DASHBOARD.name).is_file()
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    url = source["datasources"][0]["url"]
    assert url == "http://prometheus:9090"
    interval = source["datasources"][0]["jsonData"]["timeInterval"]
    assert interval == scrape["global"]["scrape_interval"]
