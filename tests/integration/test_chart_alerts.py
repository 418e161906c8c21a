"""The chart's alerts fire, and stay quiet, on synthetic series judged by Prometheus's rules engine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm_chart import ALL_FEATURES, one, template

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm

NS = "phlo"
OPERATOR_JOB = "phlo-dagster-metrics"  # release "phlo-dagster" contains the chart name: no prefix
DAEMON = 'namespace="team",service="wf-webserver",daemon_type="SCHEDULER"'
RUNS = 'dagster_runs_finished_total{{status="{}",job="a",namespace="team",service="wf"}}'


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool is missing: .ci/run installs Debian's prometheus package (apt-get install prometheus)"
    )
    return path


def rule_groups(tmp_path: Path) -> list[dict[str, Any]]:
    rule = one(template(tmp_path, ALL_FEATURES, namespace=NS), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": labels.pop("at"),
        "alertname": name,
        "exp_alerts": [{"exp_labels": labels}] if labels else [],
    }


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups(tmp_path)}))
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


def test_alerts_fire_on_the_conditions_they_describe(tmp_path: Path) -> None:
    groups = rule_groups(tmp_path)
    for group in groups:  # annotations are checked by `promtool check rules`; here: expr, for, labels
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    up = f'up{{job="{OPERATOR_JOB}",namespace="{NS}"}}'
    tests = [
        {  # the operator's target reports down: alert after 5m
            "interval": "1m",
            "input_series": [{"series": up, "values": "1 1 0x20"}],
            "alert_rule_test": [
                alert("PhloOperatorDown", at="5m"),
                # absent() of a comparison carries no labels: the release's job and namespace are in the text
                alert("PhloOperatorDown", at="10m", severity="critical"),
            ],
        },
        {  # a healthy operator: nothing
            "interval": "1m",
            "input_series": [{"series": up, "values": "1x30"}],
            "alert_rule_test": [alert("PhloOperatorDown", at="20m")],
        },
        {  # one workflow Degraded for longer than 10m
            "interval": "1m",
            "input_series": [
                {
                    "series": 'phlo_operator_workflows{condition="Degraded",status="True",namespace="team"}',
                    "values": "0 0 1x30",
                },
            ],
            "alert_rule_test": [
                alert("PhloWorkflowDegraded", at="8m"),
                alert("PhloWorkflowDegraded", at="20m", severity="warning", namespace="team"),
            ],
        },
        {  # heartbeat age grows by 60 s a minute: past 300 s at ~5m, alert 2m later
            "interval": "1m",
            "input_series": [
                {"series": f"dagster_daemon_heartbeat_age_seconds{{{DAEMON}}}", "values": "10+60x20"}
            ],
            "alert_rule_test": [
                alert("DagsterDaemonHeartbeatStale", at="4m"),
                alert(
                    "DagsterDaemonHeartbeatStale",
                    at="12m",
                    severity="warning",
                    namespace="team",
                    service="wf-webserver",
                    daemon_type="SCHEDULER",
                ),
            ],
        },
        {  # a daemon that keeps heartbeating: nothing
            "interval": "1m",
            "input_series": [
                {"series": f"dagster_daemon_heartbeat_age_seconds{{{DAEMON}}}", "values": "5x30"}
            ],
            "alert_rule_test": [alert("DagsterDaemonHeartbeatStale", at="20m")],
        },
        {  # half the runs fail: above the 25% threshold
            "interval": "1m",
            "input_series": [
                {
                    "series": RUNS.format("FAILURE"),
                    "values": "0+1x90",
                },
                {
                    "series": RUNS.format("SUCCESS"),
                    "values": "0+1x90",
                },
            ],
            "alert_rule_test": [
                alert(
                    "DagsterRunFailureRateHigh", at="60m", severity="warning", namespace="team", service="wf"
                ),
            ],
        },
        {  # one failure in twenty: quiet
            "interval": "1m",
            "input_series": [
                {
                    "series": RUNS.format("FAILURE"),
                    "values": "0+0.05x90",
                },
                {
                    "series": RUNS.format("SUCCESS"),
                    "values": "0+0.95x90",
                },
            ],
            "alert_rule_test": [alert("DagsterRunFailureRateHigh", at="60m")],
        },
    ]
    spec = tmp_path / "alerts.test.yaml"
    spec.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool(), "test", "rules", spec.name], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
