"""The webserver app in process: /metrics beside Dagster's own routes, with and without a path prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from phlo_dagster.console import CliError
from phlo_dagster.webserver import create_app

pytestmark = pytest.mark.unit


@pytest.fixture
def context(tmp_path: Path) -> Iterator[WorkspaceProcessContext]:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from: []\n")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert isinstance(instance, DagsterInstance)
        target = WorkspaceFileTarget(paths=[str(workspace)])
        with WorkspaceProcessContext(instance, workspace_load_target=target) as ctx:
            yield ctx


def test_metrics_route_sits_beside_graphql_and_the_ui(context: WorkspaceProcessContext) -> None:
    with TestClient(create_app(context)) as client:
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        names = {f.name for f in text_string_to_metric_families(metrics.text)}
        assert {"dagster_runs", "dagster_runs_queued", "dagster_code_location_load_errors"} <= names
        graphql = client.post("/graphql", json={"query": "{ __typename }"})
        assert graphql.status_code == 200 and graphql.json()["data"] == {"__typename": "Query"}
        assert client.get("/server_info").status_code == 200
        assert "<html" in client.get("/runs").text.lower()  # the UI's catch-all still serves the app


def test_path_prefix_serves_metrics_at_both_paths(context: WorkspaceProcessContext) -> None:
    with TestClient(create_app(context, "/dagster")) as client:
        assert "dagster_runs_queued" in client.get("/metrics").text
        assert "dagster_runs_queued" in client.get("/dagster/metrics").text
        assert client.post("/dagster/graphql", json={"query": "{ __typename }"}).status_code == 200


@pytest.mark.parametrize("prefix", ["dagster", "/dagster/"])
def test_bad_path_prefix_is_named(context: WorkspaceProcessContext, prefix: str) -> None:
    with pytest.raises(CliError, match="--path-prefix"):
        create_app(context, prefix)


def test_prime_metrics_reads_the_history_in_the_background(
    context: WorkspaceProcessContext, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    from dagster import DagsterRun

    context.instance.add_run(DagsterRun(job_name="nightly", run_id="r1"))
    caplog.set_level(logging.INFO, logger="phlo_dagster.metrics")
    app = create_app(context, prime_metrics=True)
    deadline = time.monotonic() + 30
    while not any("metrics: history read" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "priming did not finish"
        time.sleep(0.05)
    with TestClient(app) as client:
        text = client.get("/metrics").text
    assert 'dagster_runs{job="nightly",status="NOT_STARTED"} 1.0' in text
