"""`phlo dev` as real processes: a GraphQL-launched run moves /metrics, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

WORKFLOW = """
from phlo_dagster.capabilities import (
    AssetCheckSpec, AssetSpec, CheckResult, MaterializeResult, RunSpec, register_asset,
)


def load(context):
    context.logger.info("loading 3 events")
    yield MaterializeResult(metadata={"rows": 3})
    yield CheckResult(check_name="has_rows", passed=True)  # severity comes from the declared spec


def slow(context):
    import time

    time.sleep(300)
    return MaterializeResult()


register_asset(AssetSpec(key="raw.slow", group="ingestion", run=RunSpec(fn=slow, max_runtime_seconds=3)))
register_asset(
    AssetSpec(
        key="raw.events",
        group="ingestion",
        run=RunSpec(fn=load),
        checks=[AssetCheckSpec(name="has_rows", asset_key="raw.events", severity="WARN")],
    )
)
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


def graphql(base: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    assert "errors" not in data, data
    return data["data"]


def scrape(base: str) -> Samples:
    text = get(f"{base}/metrics")
    lint(text)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def lint(text: str) -> None:
    """promtool's exposition lint (Debian package prometheus, which .ci/run installs); no promtool fails.

    Mutation run (2026-12-02): with a PATH whose only copy of /usr/bin lacks promtool,
    test_graphql_run_moves_metrics[sqlite] failed at its first scrape with "promtool not found"; before,
    lint() returned silently and the test passed."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found on PATH: install Debian's prometheus package"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def project_dir(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "events.py").write_text(WORKFLOW)
    return project


def dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_"))}
    env["PHLO_PLUGINS_ENABLED"] = "false"  # only this test's workflow, not the installed example plugin
    return env


def write_postgres_instance(project: Path, pg: Any, database: str) -> None:
    """.phlo/dagster.yaml as a user writes it for PostgreSQL storage (pg: tests.testbed.postgres.Postgres)."""
    pg.create_database(database)
    (project / ".phlo").mkdir()
    db = {
        "hostname": pg.host,
        "port": pg.port,
        "username": pg.user,
        "password": pg.password,
        "db_name": database,
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; dagster-postgres ships psycopg2.
        "scheme": "postgresql+psycopg2",
    }
    config = {"storage": {"postgres": {"postgres_db": db}}, "telemetry": {"enabled": False}}
    (project / ".phlo" / "dagster.yaml").write_text(yaml.safe_dump(config))


@contextlib.contextmanager
def running_dev(
    project: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`phlo dev` in project on a free port (dev_env() plus extra_env), once it serves; stopped with SIGTERM
    after, which must end it with exit code 0."""
    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phlo_dagster.cli",
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workflows-path",
            "workflows",
        ],
        cwd=project,
        env={**dev_env(), **(extra_env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                get(f"{base}/server_info", timeout=2)
                # the webserver can answer before `phlo dev` has seen it and printed its ready lines
                if "press Ctrl-C to stop" in log_path.read_text():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "phlo dev did not serve within 180 s"
            time.sleep(1)
        yield base, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]


@pytest.fixture
def dev_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """`phlo dev` on a free port in a temp project: sqlite | postgres storage, or broken (a bad workflow)."""
    project = project_dir(tmp_path)
    if request.param == "broken":
        (project / "workflows" / "zz_broken.py").write_text("import nonexistent_module_xyz\n")
    if request.param == "postgres":
        write_postgres_instance(
            project, request.getfixturevalue("postgres"), f"phlo_dev_{uuid.uuid4().hex[:10]}"
        )
    with running_dev(project, tmp_path / "dev.log") as (base, _proc):
        yield base, tmp_path / "dev.log"


def launch_asset(base: str, path: list[str]) -> str:
    """Launch a run of the asset job materializing one asset of location `phlo`; its run id."""
    params = {
        "selector": {
            "repositoryLocationName": "phlo",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": path}],
        },
        "mode": "default",
    }
    launched = graphql(base, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def launch_and_wait(base: str) -> str:
    run_id = launch_asset(base, ["raw", "events"])
    deadline = time.monotonic() + 240
    status = ""
    while time.monotonic() < deadline:
        status = graphql(base, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status or 'not at all'}"
    return run_id


@pytest.mark.parametrize("dev_server", ["sqlite", "postgres"], indirect=True)
def test_graphql_run_moves_metrics(dev_server: tuple[str, Path], request: pytest.FixtureRequest) -> None:
    base, log = dev_server
    assert f"({request.node.callspec.params['dev_server']} storage)" in log.read_text()
    before = scrape(base)
    assert value(before, "dagster_code_location_load_errors", location="phlo") == 0
    assert ("phlo_definitions_build_seconds", (("location", "phlo"),)) in before
    assert value(before, "dagster_asset_materializations_total", asset_key="raw/events") == 0

    launch_and_wait(base)
    after = scrape(base)

    assert value(after, "dagster_asset_materializations_total", asset_key="raw/events") == 1
    assert value(after, "dagster_runs", status="SUCCESS", job="__ASSET_JOB") == 1
    assert value(after, "dagster_runs_finished_total", status="SUCCESS", job="__ASSET_JOB") == 1
    assert value(after, "dagster_run_duration_seconds_count", job="__ASSET_JOB", status="SUCCESS") == 1
    labels = {"asset_key": "raw/events", "check_name": "has_rows", "outcome": "passed", "severity": "warn"}
    labels["blocking"] = "true"  # a Phlo check spec blocks unless it says otherwise
    assert value(after, "dagster_asset_check_evaluations_total", **labels) == 1
    assert value(after, "dagster_runs_queued") == 0
    # the daemon dequeued the run, so its heartbeat is fresh
    age = value(after, "dagster_daemon_heartbeat_age_seconds", daemon_type="QUEUED_RUN_COORDINATOR")
    assert 0 < age < 120, age

    launch_and_wait(base)
    again = scrape(base)
    assert value(again, "dagster_asset_materializations_total", asset_key="raw/events") == 2
    assert value(again, "dagster_runs_finished_total", status="SUCCESS", job="__ASSET_JOB") == 2


@pytest.mark.parametrize("dev_server", ["sqlite"], indirect=True)
def test_max_runtime_stops_a_run_of_the_asset_job(dev_server: tuple[str, Path]) -> None:
    """RunSpec.max_runtime_seconds: the daemon's run monitoring ends an overrunning run of the asset job."""
    base, _log = dev_server
    params = {
        "selector": {
            "repositoryLocationName": "phlo",
            "repositoryName": "__repository__",
            "jobName": "raw__slow_job",
        },
        "mode": "default",
    }
    launched = graphql(base, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = str(launched["run"]["runId"])
    started = time.monotonic()
    status = ""
    while time.monotonic() - started < 150:
        status = graphql(base, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status in ("FAILURE", "CANCELED"), f"run {run_id} ended {status or 'not at all'}"
    assert time.monotonic() - started < 150  # well before the step's 300 s sleep would end


LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on PythonError { message causes { message } } } } } } }
"""


@pytest.mark.parametrize("dev_server", ["broken"], indirect=True)
def test_broken_workflow_shows_as_a_code_location_load_error(dev_server: tuple[str, Path]) -> None:
    base, _log = dev_server
    samples = scrape(base)
    assert value(samples, "dagster_code_location_load_errors", location="phlo") == 1
    assert ("phlo_definitions_build_seconds", (("location", "phlo"),)) not in samples
    entry = graphql(base, LOCATION_STATUS, {})["workspaceOrError"]["locationEntries"][0]
    error = entry["locationOrLoadError"]
    assert error["__typename"] == "PythonError"
    chain = error["message"] + " ".join(c["message"] for c in error["causes"])
    assert "zz_broken.py" in chain, chain


def test_demo_serves_and_exits_after_its_first_run(tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    source = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    ignore = shutil.ignore_patterns(".phlo", "target", "*.egg-info", "__pycache__")
    shutil.copytree(source, project, ignore=ignore)
    port = free_port()
    env = {**dev_env(), "PHLO_DEMO_EXIT": "1", "PHLO_DEMO_PROJECT": str(project), "DAGSTER_PORT": str(port)}
    env.pop("PHLO_PLUGINS_ENABLED")  # the demo shows the example plugin too
    demo = [sys.executable, "-m", "phlo_dagster.demo"]
    result = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"http://127.0.0.1:{port}" in result.stdout
    assert "succeeded" in result.stdout
    with socket.socket() as sock:  # the demo stopped `phlo dev`: nothing listens on the port any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def cmdlines_under(root: Path) -> list[list[str]]:
    """Command lines of the live processes that name a path under root."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode() for a in argv if a]
        if any(str(root) in a for a in args):
            found.append(args)
    return found


@pytest.mark.parametrize("dev_server", ["sqlite"], indirect=True)
def test_webserver_and_daemon_share_one_code_server(dev_server: tuple[str, Path]) -> None:
    """Both services read a workspace of grpc_server entries that point at the one `dagster code-server
    start` process of `phlo dev`, so the definitions load once (each service used to start its own)."""
    base, log = dev_server
    project = log.parent / "project"
    services = [a for a in cmdlines_under(project) if "--workspace" in a or "-w" in a]
    workspaces = {a[a.index("--workspace" if "--workspace" in a else "-w") + 1] for a in services}
    assert len(services) == 2 and workspaces == {str(project / ".phlo" / "dev-workspace.yaml")}, services
    entries = yaml.safe_load(Path(workspaces.pop()).read_text())["load_from"]
    assert [list(e) for e in entries] == [["grpc_server"]], entries
    port = str(entries[0]["grpc_server"]["port"])
    code_servers = [a for a in cmdlines_under(project) if "code-server" in a]
    assert len(code_servers) == 1 and a_port(code_servers[0]) == port, code_servers
    entry = graphql(base, LOCATION_STATUS, {})["workspaceOrError"]["locationEntries"][0]
    assert (entry["name"], entry["locationOrLoadError"]["__typename"]) == ("phlo", "RepositoryLocation")


def a_port(argv: list[str]) -> str:
    return argv[argv.index("--port") + 1]
