"""Every dashboard query, its variables substituted, returns data on what two webserver replicas export.

The series are two real scrapes of the collector (a SQLite instance with the definitions of
tests/metrics_defs.py loaded as a code location): before and after a scenario in which runs succeed and fail,
a blocking check fails, a schedule and a sensor tick and a run waits in the queue; and of the operator's
registry. They get the labels Prometheus adds to a webserver target (two replicas, Dagster's `job` renamed
`exported_job`) and are evaluated by promtool's PromQL engine (Debian's Prometheus 2.42).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, instance_for_test
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RegisteredCodeLocationOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import TickData, TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.types import DaemonHeartbeat
from phlo_operator import metrics as operator_metrics
from phlo_operator.chart import dashboard
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phlo_dagster.metrics import DagsterCollector, registry_for, workspace_locations
from tests.metrics_defs import run
from tests.promtool import run_rule_tests

pytestmark = pytest.mark.integration  # promtool

Key = tuple[str, tuple[tuple[str, str], ...]]
REPLICAS = (
    {"namespace": "team", "job": "wf-webserver", "instance": "10.0.0.1:3000", "pod": "wf-webserver-a"},
    {"namespace": "team", "job": "wf-webserver", "instance": "10.0.0.2:3000", "pod": "wf-webserver-b"},
)
OPERATOR = {"namespace": "phlo", "job": "phlo-dagster-metrics", "instance": "10.0.1.1:8080", "pod": "op-a"}
VARIABLES = {"$namespace": "team", "$operator_namespace": "phlo"}
HALF = 30  # samples a minute apart: 30 before the scenario, 31 after; queries are evaluated at the last one


def parse(text: str, prefix: str = "") -> dict[Key, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(prefix)
    }


def operator_scrape() -> dict[Key, float]:
    return parse(generate_latest(REGISTRY).decode(), "phlo_operator_")


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[Key, float]]]:
    with instance_for_test(temp_dir=str(tmp_path_factory.mktemp("instance"))) as instance:
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name="tests.metrics_defs", attribute="defs"), location_name="phlo"
        )
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace:
            collector = DagsterCollector(instance, locations=workspace_locations(workspace))
            instance.add_daemon_heartbeat(
                DaemonHeartbeat(timestamp=time.time(), daemon_type="SCHEDULER", daemon_id="d", errors=[])
            )
            before = parse(generate_latest(registry_for(collector)).decode())
            operator_before = operator_scrape()
            scenario(instance)
            after = parse(generate_latest(registry_for(collector)).decode())
    operator_metrics.RECONCILES.labels(result="ok").inc()
    operator_metrics.RECONCILE_SECONDS.observe(0.3)
    operator_metrics.api_error("patch", 409)
    operator_metrics.api_retry("get", 429)  # a throttled call sent again (the API retries panel)
    operator_metrics.observe_workflow(("team", "wf"), [{"type": "Ready", "status": "True"}])
    yield {
        "before": before,
        "after": after,
        "operator_before": operator_before,
        "operator_after": operator_scrape(),
    }
    operator_metrics.observe_workflow(("team", "wf"), None)


def scenario(instance: DagsterInstance) -> None:
    assert run("fine", instance)
    assert not run("nightly", instance)  # raw/orders materializes, its blocking check fails the run
    assert not run("breaks", instance)
    for kind, name, status in (
        (InstigatorType.SCHEDULE, "daily", TickStatus.SUCCESS),
        (InstigatorType.SENSOR, "watch", TickStatus.SKIPPED),
    ):
        selector = InstigatorSelector(location_name="phlo", repository_name="__repository__", name=name)
        tick = instance.create_tick(
            TickData(
                instigator_origin_id=f"origin-{name}",
                instigator_name=name,
                instigator_type=kind,
                status=TickStatus.STARTED,
                timestamp=time.time(),
                selector_id=selector.get_id(),
            )
        )
        instance.update_tick(tick.with_status(status))
    job_origin = RemoteRepositoryOrigin(
        RegisteredCodeLocationOrigin("phlo"), "__repository__"
    ).get_job_origin("fine")
    instance.add_run(
        DagsterRun(
            job_name="fine", run_id="queued", status=DagsterRunStatus.QUEUED, remote_job_origin=job_origin
        )
    )


def input_series(scrapes: dict[str, dict[Key, float]]) -> list[dict[str, str]]:
    out = []
    targets = [("before", "after", replica) for replica in REPLICAS] + [
        ("operator_before", "operator_after", OPERATOR)
    ]
    for first, second, target in targets:
        for name, labels in sorted(set(scrapes[first]) | set(scrapes[second])):
            # Prometheus keeps the target's job and renames the series' own `job` label
            own = {("exported_job" if k == "job" else k): v for k, v in labels}
            text = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted({**own, **target}.items()))
            values = [scrapes[first].get((name, labels)), scrapes[second].get((name, labels))]
            samples = [("_" if v is None else repr(v)) for v in values]
            out.append(
                {
                    "series": f"{name}{{{text}}}",
                    "values": " ".join([samples[0]] * HALF + [samples[1]] * (HALF + 1)),
                }
            )
    return out


def substituted(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(f'=~"{variable}"', f'=~"{value}"')
    assert "$" not in expr, expr
    return expr


def panel_expr(title: str) -> str:
    (panel,) = [p for p in dashboard.dashboard()["panels"] if p["title"] == title]
    return substituted(panel["targets"][0]["expr"])


def expr_test(expr: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "expr": expr,
        "eval_time": f"{2 * HALF}m",
        "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


def test_every_panel_query_returns_data(tmp_path: Path, scrapes: dict[str, dict[Key, float]]) -> None:
    """Mutation (2026-12-06): a panel on a family the collector does not export (dagster_asset_freshness_state
    renamed in the dashboard) fails its expression here."""
    checks = []
    for panel in dashboard.dashboard()["panels"]:
        for target in panel.get("targets", []):
            checks.append(expr_test(f"count({substituted(target['expr'])}) > bool 0", [("{}", 1)]))
    assert len(checks) >= 20
    run_rule_tests(
        tmp_path, [], [{"interval": "1m", "input_series": input_series(scrapes), "promql_expr_test": checks}]
    )


def test_totals_count_one_replica_and_name_what_failed(
    tmp_path: Path, scrapes: dict[str, dict[Key, float]]
) -> None:
    """Two replicas export the same totals; the panels show them once and name the failed job and check.

    Mutation (2026-12-06): dashboard.one_replica returning its argument unchanged doubles every value here."""
    by_status: dict[str, float] = {}
    for (name, labels), value in scrapes["after"].items():
        if name == "dagster_runs":
            status = dict(labels)["status"]
            by_status[status] = by_status.get(status, 0) + value
    assert by_status == {"SUCCESS": 1, "FAILURE": 2, "QUEUED": 1}
    team = 'namespace="team"'
    checks = [
        expr_test(panel_expr("Runs queued"), [("{}", 1)]),
        expr_test(panel_expr("Runs in progress"), [("{}", 0)]),
        expr_test(
            panel_expr("Runs in storage by status"),
            [(f'{{status="{status}"}}', n) for status, n in sorted(by_status.items())],
        ),
        expr_test(
            panel_expr("Failed runs by job, last 24 h"),
            [(f'{{exported_job="breaks",{team}}}', 1), (f'{{exported_job="nightly",{team}}}', 1)],
        ),
        expr_test(
            panel_expr("Failed checks, last 24 h"),
            [
                (
                    f'{{asset_key="raw/orders",blocking="true",check_name="orders_unique",{team},severity="error"}}',
                    1,
                )
            ],
        ),
        expr_test(
            panel_expr("Asset freshness"),
            [(f'{{asset_key="raw/orders",{team},state="pass"}}', 1)],
        ),
    ]
    run_rule_tests(
        tmp_path, [], [{"interval": "1m", "input_series": input_series(scrapes), "promql_expr_test": checks}]
    )


def test_series_names_are_valid(scrapes: dict[str, dict[Key, float]]) -> None:
    for name, _labels in scrapes["after"]:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
