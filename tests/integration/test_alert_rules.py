"""Each of the chart's alerts fires on the failure it names and stays quiet otherwise, judged by promtool.

The rules are phlo_operator.chart.alerts.rule_groups() with the chart's default values: the rules the chart's
PrometheusRule holds (tests/integration/test_chart_alerts.py compares them with what helm renders). Series
carry the labels Prometheus gives a webserver target of the operator's ServiceMonitor (`namespace`, `job` =
`<workflow>-webserver`, `instance`, `pod`), with Dagster's own `job` label renamed `exported_job`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phlo_operator.chart import alerts

from tests.promtool import check_rules, run_rule_tests

pytestmark = pytest.mark.integration  # promtool

NS = "phlo"
OPERATOR_JOB = "phlo-dagster-metrics"
DEPLOYMENT = {"namespace": "team", "job": "wf-webserver"}
REPLICA_A = 'namespace="team",job="wf-webserver",instance="10.0.0.1:3000",pod="wf-webserver-a"'
REPLICA_B = 'namespace="team",job="wf-webserver",instance="10.0.0.2:3000",pod="wf-webserver-b"'


def series(name: str, values: str, replica: str = REPLICA_A, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{replica}{extra}}}", "values": values}


def fires(name: str, at: str, **labels: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": labels}]}


def quiet(name: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def managed(values: str) -> dict[str, str]:
    """The operator's series for workflow team/wf, whose webserver Service (target job) is wf-webserver."""
    labels = 'workflow_namespace="team",workflow="wf",webserver_service="wf-webserver"'
    target = f'namespace="{NS}",job="{OPERATOR_JOB}",instance="10.0.1.1:8080",pod="op-a"'
    return {"series": f"phlo_operator_workflow_webserver{{{target},{labels}}}", "values": values}


def failed_check(check: str, severity: str, blocking: str) -> dict[str, str]:
    """A check of raw/orders whose evaluations are counted at 0 from the start and fail once at 10m."""
    labels = {"asset_key": "raw/orders", "check_name": check, "severity": severity, "blocking": blocking}
    return series("dagster_asset_check_evaluations_total", "0x10 1x80", outcome="failed", **labels)


def case(input_series: list[dict[str, str]], *checks: dict[str, Any]) -> dict[str, Any]:
    return {"interval": "1m", "input_series": input_series, "alert_rule_test": list(checks)}


UP = "up"
CRITICAL = {"severity": "critical", **DEPLOYMENT}
WARNING = {"severity": "warning", **DEPLOYMENT}

CASES: dict[str, list[dict[str, Any]]] = {
    "PhloOperatorDown": [
        case(  # the operator's target reports down: after 5m
            [{"series": f'up{{job="{OPERATOR_JOB}",namespace="{NS}"}}', "values": "1 1 0x20"}],
            quiet("PhloOperatorDown", "5m"),
            fires("PhloOperatorDown", "10m", severity="critical"),
        ),
        case(
            [{"series": f'up{{job="{OPERATOR_JOB}",namespace="{NS}"}}', "values": "1x30"}],
            quiet("PhloOperatorDown", "20m"),
        ),
    ],
    "PhloWorkflowDegraded": [
        case(
            [
                {
                    "series": 'phlo_operator_workflows{condition="Degraded",status="True",namespace="team"}',
                    "values": "0 0 1x30",
                }
            ],
            quiet("PhloWorkflowDegraded", "8m"),
            fires("PhloWorkflowDegraded", "20m", severity="warning", namespace="team"),
        ),
        case(
            [
                {
                    "series": 'phlo_operator_workflows{condition="Degraded",status="True",namespace="team"}',
                    "values": "0x30",
                }
            ],
            quiet("PhloWorkflowDegraded", "20m"),
        ),
    ],
    "DagsterWebserverDown": [
        case(  # the target answers, then fails from 10m: alert after 5m more
            [series(UP, "1x10 0x30")],
            quiet("DagsterWebserverDown", "13m"),
            fires("DagsterWebserverDown", "17m", **CRITICAL),
        ),
        case(  # the target disappears at 10m (its pod is gone) while the operator manages the workflow
            [series(UP, "1x10"), managed("1x40")],
            quiet("DagsterWebserverDown", "12m"),
            fires("DagsterWebserverDown", "25m", **CRITICAL),
        ),
        case(  # the workflow is deleted at 10m: its webserver goes with it, no alert
            [series(UP, "1x10"), managed("1x10")],
            quiet("DagsterWebserverDown", "25m"),
        ),
        case(  # one of two replicas down: the webserver still serves
            [series(UP, "1x40"), series(UP, "1x10 0x30", REPLICA_B)],
            quiet("DagsterWebserverDown", "30m"),
        ),
    ],
    "DagsterDaemonDown": [
        case(  # the webserver is up and no daemon ever heartbeated
            [series(UP, "1x30")],
            quiet("DagsterDaemonDown", "1m"),
            fires("DagsterDaemonDown", "5m", **CRITICAL),
        ),
        case(  # heartbeats stop: the age passes 300 s at ~5m, alert 2m later
            [
                series(UP, "1x30"),
                series("dagster_daemon_heartbeat_age_seconds", "10+60x30", daemon_type="SCHEDULER"),
            ],
            quiet("DagsterDaemonDown", "5m"),
            fires("DagsterDaemonDown", "10m", daemon_type="SCHEDULER", **CRITICAL),
        ),
        case(  # a daemon that keeps heartbeating
            [
                series(UP, "1x30"),
                series("dagster_daemon_heartbeat_age_seconds", "5x30", daemon_type="SCHEDULER"),
            ],
            quiet("DagsterDaemonDown", "20m"),
        ),
        case(  # the webserver itself is down: DagsterWebserverDown says so, not this
            [series(UP, "0x30")],
            quiet("DagsterDaemonDown", "20m"),
        ),
    ],
    "DagsterRunFailed": [
        case(  # a daily job (its series at 0 from the first scrape) fails once, after a day; two replicas
            [
                series("dagster_runs_finished_total", "0x1440 1x120", status="FAILURE", exported_job="daily"),
                series(
                    "dagster_runs_finished_total",
                    "0x1440 1x120",
                    REPLICA_B,
                    status="FAILURE",
                    exported_job="daily",
                ),
                series("dagster_runs_finished_total", "0x1560", status="FAILURE", exported_job="hourly"),
            ],
            quiet("DagsterRunFailed", "1439m"),
            fires("DagsterRunFailed", "1442m", exported_job="daily", **WARNING),
            quiet("DagsterRunFailed", "1510m"),  # the 1h window has passed
        ),
        case(  # runs succeed: nothing
            [
                series("dagster_runs_finished_total", "0+1x120", status="SUCCESS", exported_job="daily"),
                series("dagster_runs_finished_total", "0x120", status="FAILURE", exported_job="daily"),
            ],
            quiet("DagsterRunFailed", "100m"),
        ),
    ],
    "DagsterRunQueueStuck": [
        case(  # a run waits from 10m on: older than 900 s at 25m
            [series("dagster_runs_queued_oldest_age_seconds", "0x10 60+60x30")],
            quiet("DagsterRunQueueStuck", "20m"),
            fires("DagsterRunQueueStuck", "27m", **WARNING),
        ),
        case(  # runs are dequeued within a minute or two
            [series("dagster_runs_queued_oldest_age_seconds", "0 30 90 0 45 0x30")],
            quiet("DagsterRunQueueStuck", "20m"),
        ),
    ],
    "DagsterAssetStale": [
        case(
            [
                series("dagster_asset_freshness_state", "1x10 0x30", asset_key="raw/orders", state="pass"),
                series("dagster_asset_freshness_state", "0x10 1x30", asset_key="raw/orders", state="fail"),
            ],
            quiet("DagsterAssetStale", "13m"),
            fires("DagsterAssetStale", "17m", asset_key="raw/orders", **WARNING),
        ),
        case(  # warn is not fail
            [
                series("dagster_asset_freshness_state", "1x40", asset_key="raw/orders", state="warn"),
                series("dagster_asset_freshness_state", "0x40", asset_key="raw/orders", state="fail"),
            ],
            quiet("DagsterAssetStale", "30m"),
        ),
    ],
    "DagsterBlockingCheckFailed": [
        case(  # a blocking ERROR check fails once at 10m
            [failed_check("unique", "error", "true")],
            quiet("DagsterBlockingCheckFailed", "9m"),
            fires(
                "DagsterBlockingCheckFailed", "12m", asset_key="raw/orders", check_name="unique", **WARNING
            ),
        ),
        case(  # a non-blocking ERROR check and a blocking WARN check fail: neither blocks anything
            [failed_check("soft", "error", "false"), failed_check("unique", "warn", "true")],
            quiet("DagsterBlockingCheckFailed", "12m"),
        ),
    ],
    "DagsterCodeLocationError": [
        case(
            [series("dagster_code_location_load_errors", "0x10 1x30", location="phlo")],
            quiet("DagsterCodeLocationError", "13m"),
            fires("DagsterCodeLocationError", "17m", location="phlo", **WARNING),
        ),
        case(
            [series("dagster_code_location_load_errors", "0x40", location="phlo")],
            quiet("DagsterCodeLocationError", "30m"),
        ),
    ],
}


def groups() -> list[dict[str, Any]]:
    return alerts.rule_groups(OPERATOR_JOB, NS)


def test_every_alert_has_cases_and_a_runbook(tmp_path: Path) -> None:
    assert set(CASES) == set(alerts.ALERT_NAMES)
    out = check_rules(tmp_path, groups())
    assert f"{len(alerts.ALERT_NAMES)} rules found" in out
    for group in groups():
        for rule in group["rules"]:
            assert rule["annotations"]["runbook"] and rule["annotations"]["summary"], rule["alert"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_on_its_failure_and_stays_quiet_otherwise(tmp_path: Path, name: str) -> None:
    """Annotations are left out here (`promtool check rules` checks their templates): expr, for and labels.

    Mutation (2026-12-06): DagsterRunFailed as the old failure-ratio rule (4 runs an hour at least) stays
    quiet on the daily job; DagsterDaemonDown without its `unless` branch stays quiet on a daemon that never
    started; DagsterWebserverDown as `up == 0` stays quiet when the target is gone, and without its
    `and on (...) phlo_operator_workflow_webserver` alerts on the deleted workflow. Each fails its case."""
    only = [
        {**group, "rules": [_without_annotations(r) for r in group["rules"] if r["alert"] == name]}
        for group in groups()
    ]
    run_rule_tests(tmp_path, [g for g in only if g["rules"]], CASES[name])


def _without_annotations(rule: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in rule.items() if key != "annotations"}
