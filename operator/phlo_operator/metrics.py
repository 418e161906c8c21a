"""Operator metrics (prometheus-client), served on --metrics-port."""

from __future__ import annotations

import importlib.metadata
import threading
from collections import Counter as Tally
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from phlo_operator import names
from phlo_operator.vocabulary import WEBSERVER

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
API_RETRIES = Counter(
    "phlo_operator_api_retries_total",
    "Kubernetes API calls sent again after a backoff (429 throttled, 409 conflict on a patch).",
    ["verb", "code"],
)
BUILD_INFO = Gauge("phlo_operator_build_info", "Always 1; the operator's version.", ["version"])
# Lets DagsterWebserverDown tell a webserver that is gone from one whose workflow was deleted.
WORKFLOW_WEBSERVERS = Gauge(
    "phlo_operator_workflow_webserver",
    "1 for each PhloWorkflow the operator manages, naming its webserver Service (its metrics target's job).",
    ["workflow_namespace", "workflow", "webserver_service"],
)
for _result in RECONCILE_RESULTS:
    RECONCILES.labels(result=_result)
#: (verb, code) pairs the client retries (phlo_operator.retry: 429 on any verb it sends, 409 on a patch); each
#: series exists from the start, so the dashboard's retries query and `increase()` see the first one.
API_RETRY_SERIES = (*((verb, "429") for verb in ("get", "post", "patch", "delete")), ("patch", "409"))
for _verb, _code in API_RETRY_SERIES:
    API_RETRIES.labels(verb=_verb, code=_code)


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


def api_retry(verb: str, code: int) -> None:
    API_RETRIES.labels(verb=verb, code=str(code)).inc()


def observe_workflow(key: tuple[str, str], conditions: list[dict[str, Any]] | None) -> None:
    """Record a workflow's latest conditions (None: it is gone) and refresh the gauges from all of them."""
    with _lock:
        namespace, name = key
        webserver = (namespace, name, names.child(name, WEBSERVER))
        if conditions is None:
            if _conditions.pop(key, None) is not None:
                WORKFLOW_WEBSERVERS.remove(*webserver)
        else:
            _conditions[key] = {c["type"]: c["status"] for c in conditions}
            WORKFLOW_WEBSERVERS.labels(*webserver).set(1)
        tally = Tally((t, s) for conds in _conditions.values() for t, s in conds.items())
        WORKFLOWS.clear()
        for (type_, status), count in tally.items():
            WORKFLOWS.labels(condition=type_, status=status).set(count)


def serve(port: int, host: str) -> None:
    start_http_server(port, addr=host)
