"""The operator's /metrics: build info, no `_created` samples, every reconcile result from the start."""

from __future__ import annotations

import importlib.metadata

import pytest
from phlo_operator import metrics
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.unit


def samples() -> dict[str, list[dict[str, str]]]:
    text = generate_latest(REGISTRY).decode()
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def test_build_info_no_created_series_and_zeroed_results() -> None:
    """Mutation (2026-12-06): without disable_created_metrics() the `_created` assertion fails; without the
    loop over RECONCILE_RESULTS the results assertion does, and without the one over API_RETRY_SERIES the
    retries assertion (test_prometheus_scrape found the dashboard's retries query empty without it)."""
    found = samples()
    assert found["phlo_operator_build_info"] == [{"version": importlib.metadata.version("phlo-dagster")}]
    assert not [name for name in found if name.endswith("_created")]
    results = {labels["result"] for labels in found["phlo_operator_reconciles_total"]}
    assert set(metrics.RECONCILE_RESULTS) <= results
    retries = {(labels["verb"], labels["code"]) for labels in found["phlo_operator_api_retries_total"]}
    assert {("get", "429"), ("patch", "429"), ("patch", "409")} <= retries


def test_reference_table_lists_every_operator_family() -> None:
    """docs/metrics.md's operator rows come from reference.OPERATOR_FAMILIES: it must hold every family."""
    from phlo_operator.chart import reference

    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        if family.name.startswith("phlo_operator_")
    }
    assert {name for name, _kind, _labels, _doc in reference.operator_families()} == exported
    assert all(f"`{name}` (operator)" in reference.metrics_table() for name in exported)


def test_managed_workflows_name_their_webserver_service() -> None:
    """DagsterWebserverDown joins `up` with this gauge: a deleted workflow's series must go with it."""
    labels = {
        "workflow_namespace": "team",
        "workflow": "nightly-etl",
        "webserver_service": "nightly-etl-webserver",
    }
    metrics.observe_workflow(("team", "nightly-etl"), [{"type": "Ready", "status": "True"}])
    assert REGISTRY.get_sample_value("phlo_operator_workflow_webserver", labels) == 1
    metrics.observe_workflow(("team", "nightly-etl"), None)
    assert REGISTRY.get_sample_value("phlo_operator_workflow_webserver", labels) is None
    metrics.observe_workflow(("team", "never-seen"), None)  # gone before it was observed: nothing to remove
