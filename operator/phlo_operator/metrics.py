"""Operator metrics (prometheus-client), served on --metrics-port."""

from __future__ import annotations

import importlib.metadata
import threading
from collections import Counter as Tally
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

# `_created` samples double the series and tell nothing a restart's reset does not.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Outcomes of a reconcile pass (reconcile.reconciler.Result.outcome); each series exists from the start.
RECONCILE_RESULTS = ("ok", "invalid", "error", "gone")
RECONCILES = Counter("phlo_operator_reconciles_total", "Reconcile passes by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "phlo_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
WORKFLOWS = Gauge(
    "phlo_operator_workflows", "PhloWorkflows by condition type and status.", ["condition", "status"]
)
API_ERRORS = Counter("phlo_operator_api_errors_total", "Failed Kubernetes API calls.", ["verb", "code"])
BUILD_INFO = Gauge("phlo_operator_build_info", "Always 1; the operator's version.", ["version"])
for _result in RECONCILE_RESULTS:
    RECONCILES.labels(result=_result)


def _version() -> str:
    try:
        return importlib.metadata.version("phlo-dagster")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(version=_version()).set(1)

_lock = threading.Lock()
_conditions: dict[tuple[str, str], dict[str, str]] = {}


def api_error(verb: str, code: int) -> None:
    API_ERRORS.labels(verb=verb, code=str(code)).inc()


def observe_workflow(key: tuple[str, str], conditions: list[dict[str, Any]] | None) -> None:
    """Record a workflow's latest conditions (None: it is gone) and refresh the gauge from all of them."""
    with _lock:
        if conditions is None:
            _conditions.pop(key, None)
        else:
            _conditions[key] = {c["type"]: c["status"] for c in conditions}
        tally = Tally((t, s) for conds in _conditions.values() for t, s in conds.items())
        WORKFLOWS.clear()
        for (type_, status), count in tally.items():
            WORKFLOWS.labels(condition=type_, status=status).set(count)


def serve(port: int, host: str) -> None:
    start_http_server(port, addr=host)
