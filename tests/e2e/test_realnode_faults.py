"""Pod-level faults on the real node while runs are in flight (issue 16, item 2).

Its own operator release and quickstart PhloWorkflow (cluster_flow gives this module a namespace of its own),
so the flow of test_realnode.py is left alone. With runs of raw/orders in flight, four faults within a few
seconds: the webserver pod deleted, the daemon's container SIGKILLed through the node's containerd (`ctr tasks
kill`), the code-server pod deleted, PostgreSQL's container SIGKILLed. Then, waiting only on what can be
observed: every run launched before the faults is still in the instance and ends in a terminal state
(SUCCESS, or FAILURE/CANCELED with the run monitor's reason), every daemon heartbeats again after the faults,
the schedule is still running, a run launched after the faults succeeds, the PhloWorkflow is Ready again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import flow
from tests.e2e.flow import Cluster, FlowError
from tests.testbed.realnode import RealNode

IMAGE = f"phlo-dagster:{flow.version()}"
ASSET = "raw/orders"
RUNS = 3
CRD = "crd/phloworkflows.phlo.dev"

RUNS_BY_ID = """
query($ids: [String!]) {
  runsOrError(filter: {runIds: $ids}) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}
"""
DAEMONS = """
query {
  instance {
    daemonHealth {
      allDaemonStatuses {
        daemonType required healthy lastHeartbeatTime lastHeartbeatErrors { message }
      }
    }
  }
}
"""
SCHEDULES = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name schedules { name cronSchedule scheduleState { status } } }
    }
  }
}
"""

# What the scenario measured, for the figures (printed with -s, recorded in RELIABILITY.md).
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    print("\nfaults figures:", json.dumps(FIGURES, indent=1))


@pytest.fixture(scope="module")
def faults_flow(cluster_flow: Cluster) -> Cluster:
    """The operator and the quickstart in this module's namespace, Ready, with its four components."""
    # The previous module's teardown deletes the CRD without waiting; a release must not meet it terminating.
    cluster_flow.kubectl("wait", "--for=delete", CRD, "--timeout=120s", check=False, timeout=150)
    started = time.monotonic()
    flow.install_operator(cluster_flow)
    flow.apply_quickstart(cluster_flow, IMAGE)
    flow.check_components(cluster_flow)
    FIGURES["setup_s"] = round(time.monotonic() - started)
    return cluster_flow


def _runs(base: str, ids: list[str]) -> dict[str, str]:
    found = flow.graphql(base, RUNS_BY_ID, {"ids": ids})["runsOrError"]
    if found["__typename"] != "Runs":
        raise FlowError(f"runsOrError: {found}")
    return {r["runId"]: r["status"] for r in found["results"]}


def _container(pod: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses") or []
    chosen = [s for s in statuses if name is None or s["name"] == name]
    if not chosen:
        raise FlowError(f"no container {name} in pod {pod['metadata']['name']}: {statuses}")
    return dict(chosen[0])


def _sigkill(node: RealNode, pod: dict[str, Any], container: str) -> None:
    """SIGKILL a container's process through the node's containerd, as the kernel's OOM killer would."""
    container_id = _container(pod, container)["containerID"].split("://", 1)[1]
    out = node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id, timeout=30)
    if out.returncode != 0:
        raise FlowError(f"ctr tasks kill {container_id} ({pod['metadata']['name']}): {out.stderr}")


def _one(c: Cluster, component: str) -> dict[str, Any]:
    pods = flow.pods_of(c, component)
    running = [p for p in pods if p["status"].get("phase") == "Running" and flow.pod_ready(p)]
    if len(running) != 1:
        raise FlowError(
            f"expected one Running and Ready {component} pod: {[p['metadata']['name'] for p in pods]}"
        )
    return running[0]


def _restarted(c: Cluster, component: str, container: str, before: int) -> bool:
    pod = _one(c, component)
    return _container(pod, container)["restartCount"] > before and flow.pod_ready(pod)


def _replaced(c: Cluster, component: str, old: str) -> bool:
    pod = _one(c, component)
    return pod["metadata"]["name"] != old


def test_pod_faults_under_runs_in_flight_lose_no_run_record(node: RealNode, faults_flow: Cluster) -> None:
    c = faults_flow
    components = {name: _one(c, name) for name in ("webserver", "daemon", "code-server", "postgres")}
    daemon_container = components["daemon"]["spec"]["containers"][0]["name"]
    postgres_container = components["postgres"]["spec"]["containers"][0]["name"]
    restarts = {
        "daemon": _container(components["daemon"], daemon_container)["restartCount"],
        "postgres": _container(components["postgres"], postgres_container)["restartCount"],
    }
    with c.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        ids = [flow.launch(base, ASSET) for _ in range(RUNS)]
        # In flight: a run worker has started executing (it writes its events to PostgreSQL), the others
        # are queued or starting.
        flow.wait(
            "a run to start",
            lambda: "STARTED" in _runs(base, ids).values(),
            600,
            interval=0.5,
        )
        at_fault = _runs(base, ids)
    in_flight = [run for run, status in at_fault.items() if status not in flow.FINISHED]
    assert len(in_flight) >= 2, f"the runs ended before the faults, nothing was in flight: {at_fault}"

    fault_time = time.time()
    started = time.monotonic()
    _sigkill(node, components["postgres"], postgres_container)
    _sigkill(node, components["daemon"], daemon_container)
    c.k("delete", "pod", components["webserver"]["metadata"]["name"], "--wait=false")
    c.k("delete", "pod", components["code-server"]["metadata"]["name"], "--wait=false")
    FIGURES["faults_s"] = round(time.monotonic() - started, 1)

    flow.wait(
        "the daemon container to restart",
        lambda: _restarted(c, "daemon", daemon_container, restarts["daemon"]),
        300,
    )
    flow.wait(
        "the postgres container to restart",
        lambda: _restarted(c, "postgres", postgres_container, restarts["postgres"]),
        300,
    )
    flow.wait(
        "a new webserver pod",
        lambda: _replaced(c, "webserver", components["webserver"]["metadata"]["name"]),
        300,
    )
    flow.wait(
        "a new code-server pod",
        lambda: _replaced(c, "code-server", components["code-server"]["metadata"]["name"]),
        300,
    )
    FIGURES["components_back_s"] = round(time.monotonic() - started)

    # Ready again: the operator sees every component Ready (the webserver's workspace may still lag).
    c.k("wait", "--for=condition=Ready", f"pwf/{flow.WORKFLOW}", "--timeout=5m", timeout=320)
    FIGURES["ready_s"] = round(time.monotonic() - started)
    with c.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        final = {run: flow.wait_run(base, run, timeout=420) for run in ids}
        FIGURES["runs_terminal_s"] = round(time.monotonic() - started)
        found = _runs(base, ids)
        assert sorted(found) == sorted(ids), f"run records lost: {sorted(set(ids) - set(found))}"
        reasons = {}
        for run, status in final.items():
            if status != "SUCCESS":
                messages = flow.run_messages(base, run)
                reasons[run] = messages[-3:]
                assert messages, f"run {run} ended {status} with no event saying why"

        def heartbeats_after_faults() -> list[dict[str, Any]]:
            daemons = flow.graphql(base, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            required = [d for d in daemons if d["required"]]
            stale = [d for d in required if not d["healthy"] or (d["lastHeartbeatTime"] or 0) <= fault_time]
            return required if required and not stale else []

        daemons = flow.wait(
            "every required daemon to heartbeat after the faults", heartbeats_after_faults, 300, 2
        )
        FIGURES["daemons_back_s"] = round(time.monotonic() - started)
        assert "SCHEDULER" in {d["daemonType"] for d in daemons}, daemons

        def schedules() -> list[dict[str, Any]]:
            repos = flow.graphql(base, SCHEDULES)["repositoriesOrError"]
            return [s for repo in repos.get("nodes", []) for s in repo["schedules"]]

        # The new webserver lists the code location once the new code server answers it.
        listed = flow.wait("the webserver to list the quickstart's schedule", schedules, 300, 2)
        assert all(s["scheduleState"]["status"] == "RUNNING" for s in listed), listed
        FIGURES["code_location_back_s"] = round(time.monotonic() - started)

        FIGURES["recovered_s"] = round(time.monotonic() - started)

        after = flow.launch(base, ASSET)
        assert flow.wait_run(base, after, timeout=300) == "SUCCESS", flow.run_messages(base, after)[-15:]
        FIGURES["run_after_s"] = round(time.monotonic() - started)
    FIGURES.update(
        runs=len(ids),
        in_flight_at_fault={run: at_fault[run] for run in in_flight},
        final=final,
        records_lost=len(set(ids) - set(found)),
        not_success_reasons=reasons,
        schedules=[s["name"] for s in listed],
    )
