"""The chart's alerts, written once: rendered as the PrometheusRule template and as a plain rule file.

An expression names chart values as `$(name)`: a threshold (`$(webserverDownFor)`), the webserver job pattern
(`$(webserverJob)`), or a release fact (`$(operatorJob)`, `$(releaseNamespace)`). The template turns them into
Helm expressions; `rule_groups` substitutes values, so promtool tests the very rules the chart installs
(tests/integration/test_chart_alerts.py checks that both renderings agree).

Prometheus keeps a target's own `job` label (for a webserver, `<workflow>-webserver`) and renames the `job`
label of Dagster's series to `exported_job`; alerts group by `namespace` and `job`, the deployment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from phlo_operator.chart.values import PrometheusRule

MARKER = re.compile(r"\$\((\w+)\)")
# Prometheus's own template expressions inside annotations ({{ $labels.x }}, {{ $value }}).
PROM_TEMPLATE = re.compile(r"\{\{.*?\}\}")
CRITICAL = "critical"
CONFIGURED = ""  # the chart's prometheusRule.severity


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str  # a duration or a $(threshold)
    severity: str
    summary: str
    description: str
    runbook: str


UP = 'up{job=~"$(webserverJob)"}'

OPERATOR_ALERTS = (
    Alert(
        "PhloOperatorDown",
        'absent(up{job="$(operatorJob)", namespace="$(releaseNamespace)"} == 1)',
        "$(operatorDownFor)",
        CRITICAL,
        "The phlo-dagster operator is down",
        "No healthy operator target for $(operatorJob) in namespace $(releaseNamespace) for "
        "$(operatorDownFor); PhloWorkflows are not reconciled.",
        "kubectl -n $(releaseNamespace) get pods,events for the operator; its logs name the failing API "
        "call.",
    ),
    Alert(
        "PhloWorkflowDegraded",
        'sum by (namespace) (phlo_operator_workflows{condition="Degraded", status="True"}) > 0',
        "$(degradedFor)",
        CONFIGURED,
        "A PhloWorkflow is Degraded",
        "{{ $value }} PhloWorkflow(s) watched by the operator running in {{ $labels.namespace }} have been "
        "Degraded for $(degradedFor).",
        "kubectl get pwf -A shows the Degraded condition's reason and message; kubectl describe pwf NAME the "
        "Events.",
    ),
)

DAGSTER_ALERTS = (
    Alert(
        "DagsterWebserverDown",
        # Every target of the deployment fails; or its targets are gone (seen in the lookback, none now)
        # while the operator still manages the workflow, so a deleted workflow does not alert.
        f"max by (namespace, job) ({UP}) == 0\nor\n(\n"
        f"  max by (namespace, job) (max_over_time({UP}[$(webserverAbsentLookback)]))\n"
        f"  unless on (namespace, job) {UP}\n"
        "  and on (namespace, job) label_replace(label_replace(phlo_operator_workflow_webserver,\n"
        '    "namespace", "$1", "workflow_namespace", "(.+)"), "job", "$1", "webserver_service", "(.+)")\n)',
        "$(webserverDownFor)",
        CRITICAL,
        "A Dagster webserver is down",
        "No webserver target of {{ $labels.job }} in {{ $labels.namespace }} has answered /metrics for "
        "$(webserverDownFor) (failing, or gone while the operator still manages the workflow): the UI is "
        "gone and every other Dagster alert of it is blind.",
        "kubectl -n NAMESPACE get pods -l app.kubernetes.io/component=webserver; their logs and Events say "
        "why they do not serve (a crash loop, a failed probe, storage unreachable).",
    ),
    Alert(
        "DagsterDaemonDown",
        f"(\n  max by (namespace, job) ({UP} == 1)\n  unless on (namespace, job)\n"
        "  max by (namespace, job) (dagster_daemon_heartbeat_age_seconds)\n)\nor\n"
        "max by (namespace, job, daemon_type) (dagster_daemon_heartbeat_age_seconds)"
        " > $(daemonHeartbeatMaxAgeSeconds)",
        "$(daemonDownFor)",
        CRITICAL,
        "A Dagster daemon is not running",
        "The daemon of {{ $labels.job }} in {{ $labels.namespace }} has no heartbeat, or its "
        "{{ $labels.daemon_type }} heartbeat is older than $(daemonHeartbeatMaxAgeSeconds)s: schedules, "
        "sensors and the run queue are stopped.",
        "kubectl -n NAMESPACE logs deploy/WORKFLOW-daemon; a daemon that never started shows its error there "
        "(storage, workspace).",
    ),
    Alert(
        "DagsterRunFailed",
        'max by (namespace, job, exported_job) (increase(dagster_runs_finished_total{status="FAILURE"}'
        "[$(runFailedWindow)])) > 0",
        "0m",
        CONFIGURED,
        "A Dagster run failed",
        "A run of job {{ $labels.exported_job }} ({{ $labels.job }} in {{ $labels.namespace }}) failed in "
        "the last $(runFailedWindow).",
        "Open the run in the Dagster UI (Runs, status Failure); the failed step's logs name the error.",
    ),
    Alert(
        "DagsterRunQueueStuck",
        "max by (namespace, job) (dagster_runs_queued_oldest_age_seconds) > $(runQueueMaxAgeSeconds)",
        "0m",
        CONFIGURED,
        "Dagster's run queue is not moving",
        "The oldest queued run of {{ $labels.job }} in {{ $labels.namespace }} has waited "
        "{{ $value | humanizeDuration }} (threshold $(runQueueMaxAgeSeconds)s).",
        "Check DagsterDaemonDown first; else the queue's concurrency limits (dagster.yaml run_queue) or "
        "run Jobs that cannot start (kubectl get jobs,pods in the run namespace).",
    ),
    Alert(
        "DagsterAssetStale",
        'max by (namespace, job, asset_key) (dagster_asset_freshness_state{state="fail"}) == 1',
        "$(assetStaleFor)",
        CONFIGURED,
        "A Dagster asset is stale",
        "Asset {{ $labels.asset_key }} of {{ $labels.job }} in {{ $labels.namespace }} fails its freshness "
        "policy.",
        "Find why the asset was not materialized in time: its schedule or sensor ticks, its last run, an "
        "upstream asset's failure (Dagster UI, the asset's page).",
    ),
    Alert(
        "DagsterBlockingCheckFailed",
        "max by (namespace, job, asset_key, check_name) (increase(dagster_asset_check_evaluations_total"
        '{outcome="failed", severity="error", blocking="true"}[$(checkFailedWindow)])) > 0',
        "0m",
        CONFIGURED,
        "A blocking Dagster asset check failed",
        "Check {{ $labels.check_name }} of asset {{ $labels.asset_key }} ({{ $labels.job }} in "
        "{{ $labels.namespace }}) failed with ERROR severity in the last $(checkFailedWindow); downstream "
        "assets were not materialized.",
        "Open the asset's Checks tab in the Dagster UI: the evaluation's metadata says what failed; fix the "
        "data, then re-materialize.",
    ),
    Alert(
        "DagsterCodeLocationError",
        "max by (namespace, job, location) (dagster_code_location_load_errors) == 1",
        "$(codeLocationErrorFor)",
        CONFIGURED,
        "A Dagster code location fails to load",
        "Code location {{ $labels.location }} of {{ $labels.job }} in {{ $labels.namespace }} has failed to "
        "load for $(codeLocationErrorFor); its jobs, schedules and sensors are unavailable.",
        "Dagster UI, Deployment: the location's error; kubectl logs of the code server for the traceback.",
    ),
)

GROUPS = (("phlo-dagster.operator", OPERATOR_ALERTS), ("phlo-dagster.dagster", DAGSTER_ALERTS))
ALERT_NAMES = tuple(a.name for _g, alerts in GROUPS for a in alerts)


def _substitute(text: str, facts: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in facts:
            raise KeyError(f"alert text names $({match.group(1)}), which is not a chart value")
        return facts[match.group(1)]

    return MARKER.sub(value, text)


def rule_groups(
    operator_job: str = "phlo-dagster-metrics",
    release_namespace: str = "phlo",
    rule: PrometheusRule | None = None,
) -> list[dict[str, Any]]:
    """The rule groups with the values of `rule` (default: the chart's defaults), as Prometheus reads them."""
    rule = rule or PrometheusRule()
    thresholds = rule.thresholds.model_dump(by_alias=True)
    facts = {key: str(v) for key, v in thresholds.items()}
    facts |= {
        "operatorJob": operator_job,
        "releaseNamespace": release_namespace,
        "webserverJob": rule.webserver_job,
    }
    return [
        {
            "name": group,
            "rules": [
                {
                    "alert": a.name,
                    "expr": _substitute(a.expr, facts),
                    "for": _substitute(a.for_, facts),
                    "labels": {"severity": a.severity or rule.severity},
                    "annotations": {
                        "summary": a.summary,
                        "description": _substitute(a.description, facts),
                        "runbook": _substitute(a.runbook, facts),
                    },
                }
                for a in alerts
            ],
        }
        for group, alerts in GROUPS
    ]


_HELM_FACTS = {
    "operatorJob": "{{ $operatorJob }}",
    "releaseNamespace": "{{ .Release.Namespace }}",
    "webserverJob": "{{ .Values.prometheusRule.webserverJob }}",
}


def _helm(text: str) -> str:
    """Prometheus's own {{ ... }} pass through Helm as raw strings; $(value) becomes a Helm expression."""
    escaped = PROM_TEMPLATE.sub(lambda m: "{{ `" + m.group(0) + "` }}", text)
    return MARKER.sub(lambda m: _HELM_FACTS.get(m.group(1), "{{ $t." + m.group(1) + " }}"), escaped)


def _helm_string(text: str) -> str:
    return json.dumps(_helm(text))  # a YAML double-quoted scalar; Helm's {{ }} and raw `...` survive it


def render_template() -> str:
    """templates/prometheusrule.yaml."""
    lines = [
        "{{- /* GENERATED from phlo_operator.chart.alerts by `make generate`. */}}",
        "{{- if .Values.prometheusRule.enabled }}",
        "{{- $t := .Values.prometheusRule.thresholds }}",
        "{{- $severity := .Values.prometheusRule.severity }}",
        '{{- $operatorJob := include "phlo-dagster.metricsServiceName" . }}',
        "apiVersion: monitoring.coreos.com/v1",
        "kind: PrometheusRule",
        "metadata:",
        '  name: {{ include "phlo-dagster.fullname" . }}',
        "  namespace: {{ .Release.Namespace }}",
        "  labels:",
        '    {{- include "phlo-dagster.labels" . | nindent 4 }}',
        "    {{- with .Values.prometheusRule.labels }}",
        "    {{- toYaml . | nindent 4 }}",
        "    {{- end }}",
        "spec:",
        "  groups:",
    ]
    for group, alerts in GROUPS:
        lines += [f"    - name: {group}", "      rules:"]
        for a in alerts:
            lines += [f"        - alert: {a.name}", "          expr: |-"]
            lines += [f"            {line}" for line in _helm(a.expr).splitlines()]
            lines += [
                f"          for: {_helm(a.for_)}",
                "          labels:",
                f"            severity: {a.severity or '{{ $severity | quote }}'}",
                "          annotations:",
                f"            summary: {_helm_string(a.summary)}",
                f"            description: {_helm_string(a.description)}",
                f"            runbook: {_helm_string(a.runbook)}",
            ]
    lines.append("{{- end }}")
    return "\n".join(lines) + "\n"
