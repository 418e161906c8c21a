"""The metrics and alerts reference tables, generated from the code that defines them (docs and chart README).

The webserver's families come from phlo_dagster.constants.DAGSTER_METRIC_FAMILIES (the collector builds its
families from that list), the operator's from the collectors of phlo_operator.metrics, the alerts from
phlo_operator.chart.alerts.
"""

from __future__ import annotations

import re
from typing import Any

from phlo_dagster import constants as c
from phlo_operator import metrics as operator_metrics
from phlo_operator.chart import alerts

METRICS_BLOCK = ("metrics", "phlo_dagster/constants.py and operator/phlo_operator/metrics.py")
ALERTS_BLOCK = ("alerts", "operator/phlo_operator/chart/alerts.py")
OPERATOR_FAMILIES: tuple[Any, ...] = (
    operator_metrics.RECONCILES,
    operator_metrics.RECONCILE_SECONDS,
    operator_metrics.WORKFLOWS,
    operator_metrics.API_ERRORS,
    operator_metrics.API_RETRIES,
    operator_metrics.BUILD_INFO,
    operator_metrics.WORKFLOW_WEBSERVERS,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _labels(labels: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{label}`" for label in labels)


def operator_families() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name as queried, type, labels, help) of the operator's metrics."""
    out = []
    for metric in OPERATOR_FAMILIES:
        # prometheus_client keeps a collector's name, type and label names in these attributes
        kind: str = metric._type
        name: str = metric._name + ("_total" if kind == "counter" else "")
        out.append((name, kind, tuple(metric._labelnames), str(metric._documentation)))
    return out


def metrics_table() -> str:
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for process, families in (
        ("webserver", c.DAGSTER_METRIC_FAMILIES),
        ("operator", tuple(operator_families())),
    ):
        for name, kind, labels, doc in families:
            rows.append(f"| `{name}` ({process}) | {kind} | {_labels(labels)} | {_cell(doc)} |")
    return "\n".join(rows) + "\n"


def _readable(text: str) -> str:
    """Alert text for a reader: chart values by name, Prometheus's templates as what they stand for."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"{\1}", text)
    text = re.sub(r"\{\{ \$value[^}]*\}\}", "{value}", text)
    return alerts.MARKER.sub(lambda m: f"`{m.group(1)}`", text)


def alerts_table() -> str:
    rows = ["| alert | severity | fires when | runbook |", "| --- | --- | --- | --- |"]
    for _group, group_alerts in alerts.GROUPS:
        for a in group_alerts:
            severity = a.severity or "`severity` value"
            when = _readable(a.description)
            if a.for_ != "0m" and a.for_ not in a.description:
                when += f" (for {_readable(a.for_)})"
            rows.append(f"| `{a.name}` | {severity} | {_cell(when)} | {_cell(_readable(a.runbook))} |")
    return "\n".join(rows) + "\n"
