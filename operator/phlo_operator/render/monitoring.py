"""A Prometheus Operator ServiceMonitor for the webserver's /metrics (rendered only when its API exists)."""

from __future__ import annotations

from typing import Any

from phlo_dagster import constants as c
from phlo_operator.render.workflow import Workflow
from phlo_operator.vocabulary import MONITORING, WEBSERVER


def service_monitor(wf: Workflow) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": wf.metadata(WEBSERVER, MONITORING),
        "spec": {
            "selector": {"matchLabels": wf.selector(WEBSERVER)},
            "namespaceSelector": {"matchNames": [wf.namespace]},
            "endpoints": [
                {
                    "port": "metrics",
                    "path": c.METRICS_PATH,
                    "interval": wf.spec.metrics.service_monitor.interval,
                }
            ],
        },
    }
