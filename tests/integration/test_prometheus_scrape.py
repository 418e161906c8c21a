"""A real Prometheus (Debian's 2.42) scrapes the webserver of `phlo services` and the operator's metrics.

`phlo services` runs the processes `phlo dev` runs (webserver and daemon), one at a time, so the daemon and
then the webserver can be stopped while Prometheus watches. After a scripted scenario (a run succeeds, a run
fails on its blocking check, an asset goes stale, a schedule ticks) every dashboard panel's query, its
variables substituted, returns data from Prometheus's HTTP API, and the alerts that should fire do, read from
Prometheus's own /api/v1/alerts (the chart's rules with short thresholds). Then the daemon is stopped
(DagsterDaemonDown, and a queued run makes DagsterRunQueueStuck), then the webserver (DagsterWebserverDown).

The operator is the real one, on the test bed (kube-apiserver, etcd, kwok nodes), reconciling a workflow to
Ready in the namespace the dashboard's $namespace names; at the end it is stopped (PhloOperatorDown).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator.chart import alerts, dashboard
from phlo_operator.chart.values import PrometheusRule

from tests.integration.test_faults import all_ready, apply, condition, workflow_docs, workflows
from tests.integration.test_operator import Operator
from tests.testbed.cluster import Testbed

pytestmark = pytest.mark.integration  # prometheus, promtool (Debian's prometheus package); the bed: binaries

WORKFLOW = """
from phlo_dagster.capabilities import (
    AssetCheckSpec, AssetSpec, CheckResult, MaterializeResult, RunSpec, register_asset,
)


def events(context):
    yield MaterializeResult(metadata={"rows": 3})
    yield CheckResult(check_name="has_rows", passed=True)


def orders(context):
    yield MaterializeResult(metadata={"rows": 2})
    yield CheckResult(check_name="unique", passed=False)


register_asset(
    AssetSpec(
        key="raw.events",
        run=RunSpec(fn=events, cron="* * * * *"),
        checks=[AssetCheckSpec(name="has_rows", asset_key="raw.events", severity="WARN", blocking=False)],
    )
)
register_asset(
    AssetSpec(
        key="raw.orders",
        run=RunSpec(fn=orders, freshness_hours=1 / 60),
        checks=[AssetCheckSpec(name="unique", asset_key="raw.orders")],
    )
)
"""

WEBSERVER_JOB = "phlo-dev-webserver"
OPERATOR_JOB = "phlo-dagster-metrics"
OPERATOR_NS = "phlo"
THRESHOLDS = {
    "operatorDownFor": "10s",
    "degradedFor": "10s",
    "webserverDownFor": "10s",
    "webserverAbsentLookback": "10m",
    "daemonDownFor": "10s",
    "daemonHeartbeatMaxAgeSeconds": 90,  # the least the chart takes: Dagster's daemons beat every 30 s
    "runFailedWindow": "30m",
    "runQueueMaxAgeSeconds": 60,
    "assetStaleFor": "10s",
    "checkFailedWindow": "30m",
    "codeLocationErrorFor": "10s",
}
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = "query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str, data: bytes | None = None, timeout: float = 30) -> Any:
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(
        urllib.request.Request(url, data=data, headers=headers), timeout=timeout
    ) as resp:
        return json.loads(resp.read())


def wait_for(what: str, probe: Any, timeout: float) -> Any:
    """Poll probe() until it returns something truthy; fail naming `what` and its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout:.0f}s; last: {last!r}")


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env["PHLO_PLUGINS_ENABLED"] = "false"
    return env


def phlo(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "phlo_dagster.cli", *args],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@dataclass
class Bed:
    project: Path
    dagster: str  # the webserver's base URL
    prometheus: str
    namespace: str  # of the workflow the operator reconciles; the webserver's target is labelled with it
    operator: Operator

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = fetch(url)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def firing(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for alert in fetch(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]:
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return out

    def firing_all(self, names: set[str]) -> dict[str, list[dict[str, str]]] | None:
        firing = self.firing()
        return firing if names <= set(firing) else None

    def launch(self, asset: str) -> str:
        params = {
            "selector": {
                "repositoryLocationName": "phlo",
                "repositoryName": "__repository__",
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": asset.split(".")}],
            },
            "mode": "default",
        }
        body = json.dumps({"query": LAUNCH, "variables": {"params": params}}).encode()
        launched = fetch(f"{self.dagster}/graphql", body, timeout=60)["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def status(self, run_id: str) -> str:
        body = json.dumps({"query": RUN_STATUS, "variables": {"runId": run_id}}).encode()
        return str(fetch(f"{self.dagster}/graphql", body)["data"]["runOrError"]["status"])


def start(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, **kwargs
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def degraded(testbed: Testbed, namespace: str, name: str) -> bool:
    found = workflows(testbed, namespace).get(name) or {}
    return condition(found, "Degraded").get("reason") == "ApplyFailed"


@pytest.fixture
def operator(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """The operator on the bed with one workflow Ready in namespace (with dbt, on an external Secret)."""
    testbed.apply_crds()
    op = Operator(testbed, [namespace], tmp_path / "operator.log").start()
    try:
        docs = workflow_docs(1)
        apply(testbed, namespace, docs)
        name = docs[1]["metadata"]["name"]
        wait_for("the workflow Ready", lambda: all_ready(testbed, namespace, {name}), 180)
        # A second one whose runs go to a namespace that does not exist: the API refuses its run RBAC, so the
        # operator counts API errors and the workflow is Degraded (ApplyFailed).
        broken = {**docs[1], "metadata": {"name": "runs-nowhere"}}
        broken["spec"] = {**docs[1]["spec"], "runLauncher": {"namespace": "no-such-run-namespace"}}
        apply(testbed, namespace, [broken])
        wait_for("runs-nowhere Degraded", lambda: degraded(testbed, namespace, "runs-nowhere"), 180)
        yield op
    finally:
        op.stop()


@pytest.fixture
def bed(tmp_path: Path, namespace: str, operator: Operator) -> Iterator[Bed]:
    prometheus_bin = shutil.which("prometheus")
    assert prometheus_bin, "prometheus is missing: .ci/run installs Debian's prometheus package"
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "shop.py").write_text(WORKFLOW)
    port, operator_port, prometheus_port = free_port(), operator.metrics_port, free_port()
    phlo(project, "services", "init", "--port", str(port))
    rule = PrometheusRule.model_validate({"webserverJob": WEBSERVER_JOB, "thresholds": THRESHOLDS})
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": alerts.rule_groups(OPERATOR_JOB, OPERATOR_NS, rule)})
    )
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [
            {
                "job_name": WEBSERVER_JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace}}],
            },
            {
                "job_name": OPERATOR_JOB,
                "static_configs": [
                    {"targets": [f"127.0.0.1:{operator_port}"], "labels": {"namespace": OPERATOR_NS}}
                ],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = start(
        [
            prometheus_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        tmp_path / "prometheus.log",
    )
    started = False
    try:
        phlo(project, "services", "start")
        started = True
        bed = Bed(
            project, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prometheus_port}", namespace, operator
        )
        wait_for("Prometheus answers", lambda: fetch(f"{bed.prometheus}/api/v1/status/buildinfo"), 60)
        yield bed
    finally:
        if started:
            subprocess.run(
                [sys.executable, "-m", "phlo_dagster.cli", "services", "stop"],
                cwd=project,
                env=clean_env(),
                capture_output=True,
                timeout=120,
            )
        stop(prometheus)


def substituted(expr: str, namespace: str) -> str:
    return expr.replace('=~"$namespace"', f'=~"{namespace}"').replace(
        '=~"$operator_namespace"', f'=~"{OPERATOR_NS}"'
    )


def test_dashboard_and_alerts_on_a_real_prometheus(bed: Bed) -> None:
    """One run fails (on raw.orders' blocking check): its job's only failure and the check's only failed run.

    Mutation (2026-12-06): without the zero series of dagster_runs_finished_total (DagsterCollector.
    _run_families) the failure's series starts at 1 and `increase()` sees nothing: the test failed with
    "panels without data: ['Failed runs by job, last 24 h']" (and DagsterRunFailed would not fire)."""
    runs = {asset: bed.launch(asset) for asset in ("raw.events", "raw.orders")}

    def all_finished() -> dict[str, str] | None:
        statuses = {asset: bed.status(run_id) for asset, run_id in runs.items()}
        return statuses if all(s in ("SUCCESS", "FAILURE") for s in statuses.values()) else None

    finished = wait_for("the runs finish", all_finished, 300)
    assert finished == {"raw.events": "SUCCESS", "raw.orders": "FAILURE"}
    # the schedule of raw.events ticks once a minute
    wait_for(
        "a schedule tick in Prometheus",
        lambda: bed.query('dagster_instigator_ticks_total{type="schedule",status="SUCCESS"} > 0'),
        150,
    )
    wait_for("raw/orders stale", lambda: bed.query('dagster_asset_freshness_state{state="fail"} == 1'), 120)

    empty = []
    for panel in dashboard.dashboard()["panels"]:
        for target in panel.get("targets", []):
            if not bed.query(substituted(target["expr"], bed.namespace)):
                empty.append(panel["title"])
    assert not empty, f"panels without data: {empty}"

    expected = {"DagsterRunFailed", "DagsterBlockingCheckFailed", "DagsterAssetStale", "PhloWorkflowDegraded"}
    try:
        firing = wait_for(
            "the run, check, freshness and Degraded alerts", lambda: bed.firing_all(expected), 120
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; firing: {bed.firing()}") from None
    assert {a["exported_job"] for a in firing["DagsterRunFailed"]} == {"__ASSET_JOB"}
    assert [(a["asset_key"], a["check_name"]) for a in firing["DagsterBlockingCheckFailed"]] == [
        ("raw/orders", "unique")
    ]
    assert [a["asset_key"] for a in firing["DagsterAssetStale"]] == ["raw/orders"]
    assert [a["namespace"] for a in firing["PhloWorkflowDegraded"]] == [OPERATOR_NS]
    quiet = {
        "DagsterWebserverDown",
        "DagsterDaemonDown",
        "DagsterRunQueueStuck",
        "DagsterCodeLocationError",
        "PhloOperatorDown",
    }
    assert not quiet & set(firing), firing

    phlo(bed.project, "services", "stop", "--service", "dagster-daemon")
    queued = bed.launch("raw.events")  # no daemon: it waits in the queue
    assert bed.status(queued) == "QUEUED"
    down = {"DagsterDaemonDown", "DagsterRunQueueStuck"}
    wait_for("the daemon and queue alerts", lambda: down <= set(bed.firing()), 240)
    assert "DagsterWebserverDown" not in bed.firing()

    phlo(bed.project, "services", "stop", "--service", "dagster")
    firing = wait_for("DagsterWebserverDown", lambda: bed.firing().get("DagsterWebserverDown"), 120)
    assert firing == [
        {
            "alertname": "DagsterWebserverDown",
            "severity": "critical",
            "namespace": bed.namespace,
            "job": WEBSERVER_JOB,
        }
    ]
    assert "PhloOperatorDown" not in bed.firing()

    bed.operator.stop()
    firing = wait_for("PhloOperatorDown", lambda: bed.firing().get("PhloOperatorDown"), 120)
    # absent() of a comparison carries no labels of the selector: the alert names the job in its text only
    assert [a["severity"] for a in firing] == ["critical"], firing
