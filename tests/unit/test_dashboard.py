"""The Grafana dashboard: panels name what they show, variables exist before any run, one replica counts."""

from __future__ import annotations

import re

import pytest
from dagster import DagsterInstance
from phlo_operator import metrics as operator_metrics
from phlo_operator.chart import dashboard
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phlo_dagster.metrics import DagsterCollector, registry_for

pytestmark = pytest.mark.unit

GROUPING = re.compile(r"\b(?:by|without) \(([^)]*)\)")


def targets() -> list[tuple[dict, dict]]:
    board = dashboard.dashboard()
    return [(panel, t) for panel in board["panels"] for t in panel.get("targets", [])]


def outer_grouping(expr: str) -> set[str]:
    """Labels of the first `by (...)` of the query: the series it returns are told apart by them."""
    match = re.search(r"\bby \(([^)]*)\)", expr)
    return {label.strip() for label in match.group(1).split(",")} - {"le"} if match else set()


def test_every_panel_names_what_it_shows() -> None:
    """Mutation (2026-12-06): dropping {{check_name}} from the failed-checks legend fails here."""
    board = dashboard.dashboard()
    titles = [p["title"] for p in board["panels"]]
    assert len(titles) == len(set(titles))
    for panel, target in targets():
        assert panel["description"], panel["title"]
        shown = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
        assert target["legendFormat"], panel["title"]
        assert outer_grouping(target["expr"]) <= shown, (panel["title"], target["legendFormat"])
    failed_checks = next(p for p in board["panels"] if p["title"].startswith("Failed checks"))
    assert {"asset_key", "check_name"} <= set(
        re.findall(r"\{\{(\w+)\}\}", failed_checks["targets"][0]["legendFormat"])
    )


def test_variables_read_series_that_exist_before_any_run() -> None:
    """The variables' series are in the first scrape of an empty instance and of a fresh operator."""
    variables = {v["name"]: v for v in dashboard.dashboard()["templating"]["list"]}
    with DagsterInstance.ephemeral() as instance:
        text = generate_latest(registry_for(DagsterCollector(instance))).decode()
    webserver = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    operator = {
        s.name for f in text_string_to_metric_families(generate_latest(REGISTRY).decode()) for s in f.samples
    }
    assert operator_metrics.BUILD_INFO  # the operator's metrics are registered
    for name, seen in (("namespace", webserver), ("operator_namespace", operator)):
        source = re.fullmatch(r"label_values\((\w+), namespace\)", variables[name]["definition"])
        assert source and source.group(1) in seen, variables[name]["definition"]


def test_webserver_totals_are_taken_from_one_replica() -> None:
    """Each replica reports the storage's totals: a sum over Dagster series keeps one replica per deployment.

    (tests/integration/test_dashboard_queries.py evaluates the queries on two replicas with promtool.)"""
    for panel, target in targets():
        expr = target["expr"]
        if "dagster_" in expr and re.search(r"\bsum\b", expr):
            assert "max without (instance, pod)" in expr, panel["title"]
        for labels in GROUPING.findall(expr):
            assert "pod" not in labels.split(", ") or "without" in expr, panel["title"]
