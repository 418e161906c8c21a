"""Pod-level faults on the real node while runs are in flight (issue 16, item 2).

Its own operator release and quickstart PhloWorkflow (cluster_flow gives this module a namespace of its own),
so the flow of test_realnode.py is left alone. raw/orders' schedule ticks every minute here (the code server's
QUICKSTART_ORDERS_CRON, read by examples/quickstart/workflows/ingest.py): the daemon asks the code server to
evaluate it, so a tick after the faults proves the scheduler works again end to end. Every tick launches a run
(a schedule's run key, the partition here, is deduplicated per tick time, not across ticks): about one extra
run a minute in the instance until the first test has seen its tick after the faults and stops the
schedule, so the tests follow the runs they launch by id (the second counts the schedule's among the records
that must survive).

The first test launches three runs of raw/orders; once one has started (its worker writes events to
PostgreSQL) and the others are queued or starting, five faults within a second: PostgreSQL's container, the
started run's worker container and the daemon's container SIGKILLed through the node's containerd (`ctr tasks
kill`), the webserver and code-server pods deleted. Then, waiting only on what can be observed: every run
launched before the faults is still in the instance and ends in a terminal state, the killed worker's run
through Dagster's run monitor (its "Detected run worker status" event), the others SUCCESS or, when
PostgreSQL went away under their event writes, FAILURE with the error as their last events; every required
daemon heartbeats again after the faults; the schedule is still running and ticks (SUCCESS or SKIPPED) at a
time after the faults; a run launched after the faults succeeds; the PhloWorkflow is Ready again.

The second test deletes the PostgreSQL pod itself with two runs launched and one started: the StatefulSet
makes a new pod on the same PersistentVolumeClaim; every run record the instance held before (the first
test's, the schedule's, these two) is still there, the two end in a terminal state, a new run succeeds.

Mutation checks (each run once, red):
- with run monitoring off (`instanceConfig: {run_monitoring: {enabled: false}}` on the workflow) the run
  whose worker was killed stays STARTED and the first test fails waiting for it to finish;
- with the schedule left daily (no QUICKSTART_ORDERS_CRON, the cron assertion taken out) every daemon
  heartbeats again and the schedule is listed RUNNING, as the test used to require, but no tick comes after
  the faults: the first test fails after 240 s waiting for one (2026-12-06);
- with the claim deleted just before the PostgreSQL pod (the StatefulSet then makes a new, empty volume, as an
  emptyDir would give) the new pod is Ready in 16 s, but the instance lists none of the 5 run records it
  held: the second test fails after 300 s waiting for it to list its runs (2026-12-06).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import flow
from tests.e2e.conftest import report_figures
from tests.e2e.flow import Cluster, FlowError
from tests.testbed.realnode import RealNode

IMAGE = f"phlo-dagster:{flow.version()}"
ASSET = "raw/orders"
RUNS = 3
CRD = "crd/phloworkflows.phlo.dev"
# The engine event Dagster's run monitor writes when it finds a run's worker dead (then fails or resumes it).
MONITOR = "Detected run worker status"

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
query($after: Float) {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        schedules {
          name cronSchedule
          scheduleState {
            id status
            ticks(limit: 5, afterTimestamp: $after, statuses: [SUCCESS, SKIPPED]) {
              timestamp status runIds skipReason
            }
          }
        }
      }
    }
  }
}
"""
STOP_SCHEDULE = """
mutation($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""
ALL_RUNS = """
query {
  runsOrError(limit: 1000) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}
"""
# raw/orders' schedule ticks every minute in this module (examples/quickstart/workflows/ingest.py reads the
# cron from the code server's environment), so a tick after the faults can be waited for.
SCHEDULE = "raw__orders_schedule"
EVERY_MINUTE = "* * * * *"
CODE_SERVER = {"replicas": 1, "env": [{"name": "QUICKSTART_ORDERS_CRON", "value": EVERY_MINUTE}]}

# What the scenario measured, for the figures (printed with -s, recorded in RELIABILITY.md).
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    report_figures("faults", FIGURES)


@pytest.fixture(scope="module")
def faults_flow(cluster_flow: Cluster) -> Cluster:
    """The operator and the quickstart in this module's namespace, Ready, with its four components."""
    # The previous module's teardown deletes the CRD without waiting; a release must not meet it terminating.
    cluster_flow.kubectl("wait", "--for=delete", CRD, "--timeout=120s", check=False, timeout=150)
    started = time.monotonic()
    flow.install_operator(cluster_flow)
    flow.apply_quickstart(cluster_flow, IMAGE, spec={"codeServer": CODE_SERVER})
    flow.check_components(cluster_flow)
    FIGURES["setup_s"] = round(time.monotonic() - started)
    return cluster_flow


def _runs(base: str, ids: list[str]) -> dict[str, str]:
    found = flow.graphql(base, RUNS_BY_ID, {"ids": ids})["runsOrError"]
    if found["__typename"] != "Runs":
        raise FlowError(f"runsOrError: {found}")
    return {r["runId"]: r["status"] for r in found["results"]}


def _all_runs(base: str) -> dict[str, str]:
    """Every run record in the instance (the module's own, its schedule's) by id."""
    found = flow.graphql(base, ALL_RUNS)["runsOrError"]
    if found["__typename"] != "Runs":
        raise FlowError(f"runsOrError: {found}")
    return {r["runId"]: r["status"] for r in found["results"]}


def _schedules(base: str, after: float | None = None) -> list[dict[str, Any]]:
    """Every schedule the webserver lists, with its finished ticks (SUCCESS, SKIPPED) after `after`."""
    repos = flow.graphql(base, SCHEDULES, {"after": after})["repositoriesOrError"]
    return [s for repo in repos.get("nodes", []) for s in repo["schedules"]]


def _terminal(base: str, ids: list[str]) -> dict[str, str]:
    """The runs' statuses once every one of them is terminal (empty before: for flow.wait)."""
    found = _runs(base, ids)
    return found if len(found) == len(ids) and set(found.values()) <= flow.FINISHED else {}


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


def _current(c: Cluster, component: str) -> dict[str, Any]:
    """The component's one Running pod (Ready or not: the daemon's probe may be failing under load)."""
    pods = [p for p in flow.pods_of(c, component) if p["status"].get("phase") == "Running"]
    if len(pods) != 1:
        raise FlowError(f"expected one Running {component} pod: {[p['metadata']['name'] for p in pods]}")
    return pods[0]


def _restarted(c: Cluster, component: str, container: str, before: int) -> bool:
    """The container runs again after the kill (Ready is judged by the PhloWorkflow's condition later: the
    daemon's probe, `dagster-daemon liveness-check`, can time out for minutes on a loaded machine)."""
    pods = [p for p in flow.pods_of(c, component) if p["status"].get("phase") == "Running"]
    return any(
        _container(p, container)["restartCount"] > before
        and _container(p, container).get("state", {}).get("running")
        for p in pods
    )


def _replaced(c: Cluster, component: str, old: str) -> bool:
    pod = _one(c, component)
    return pod["metadata"]["name"] != old


# The setup, run starts and recovery each take minutes on a loaded 2-core machine: above the suite's 900 s.
@pytest.mark.timeout(1800)
def test_pod_faults_under_runs_in_flight_lose_no_run_record(node: RealNode, faults_flow: Cluster) -> None:
    c = faults_flow
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
    victim = next(run for run in ids if at_fault[run] == "STARTED")
    worker = next(p for p in flow.run_pods(c, victim) if p["status"].get("phase") == "Running")
    in_flight = [run for run, status in at_fault.items() if status not in flow.FINISHED]
    assert len(in_flight) >= 2, f"the runs ended before the faults, nothing was in flight: {at_fault}"

    # Read just before the kills: a container restarted by its own probe since would have another id.
    components = {name: _current(c, name) for name in ("webserver", "daemon", "code-server", "postgres")}
    daemon_container = components["daemon"]["spec"]["containers"][0]["name"]
    postgres_container = components["postgres"]["spec"]["containers"][0]["name"]
    restarts = {
        "daemon": _container(components["daemon"], daemon_container)["restartCount"],
        "postgres": _container(components["postgres"], postgres_container)["restartCount"],
    }
    fault_time = time.time()
    started = time.monotonic()
    _sigkill(node, components["postgres"], postgres_container)
    _sigkill(node, worker, worker["spec"]["containers"][0]["name"])
    _sigkill(node, components["daemon"], daemon_container)
    c.k("delete", "pod", components["webserver"]["metadata"]["name"], "--wait=false")
    c.k("delete", "pod", components["code-server"]["metadata"]["name"], "--wait=false")
    faults_end = time.time()
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
            if status != "SUCCESS" or run == victim:
                messages = flow.run_messages(base, run)
                reasons[run] = [m for m in messages if MONITOR in m] or messages[-3:]
        # Only the run monitor can end the run whose worker was killed (nothing else is left to report it).
        assert any(MONITOR in m for m in reasons[victim]), (
            f"run {victim} ({final[victim]}): {reasons[victim]}"
        )
        # A run whose worker was writing to PostgreSQL when it went away may fail (Dagster retries the
        # connection a few times, then the run fails as a framework error): terminal, with its reason.
        silent = [run for run in ids if final[run] != "SUCCESS" and not reasons[run]]
        assert not silent, f"runs ended without an event saying why: {silent}"

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

        # The new webserver lists the code location once the new code server answers it.
        listed = flow.wait(
            "the webserver to list the quickstart's schedule", lambda: _schedules(base), 300, 2
        )
        assert all(s["scheduleState"]["status"] == "RUNNING" for s in listed), listed
        orders = {s["name"]: s for s in listed}.get(SCHEDULE)
        assert orders and orders["cronSchedule"] == EVERY_MINUTE, listed
        FIGURES["code_location_back_s"] = round(time.monotonic() - started)

        def tick_after_faults() -> list[dict[str, Any]]:
            """Finished ticks of raw/orders' schedule scheduled after the last fault: the restarted daemon
            asked the new code server and wrote the result to PostgreSQL. SUCCESS (here: a run launched) and
            SKIPPED (nothing requested) both prove that; a FAILURE tick (the code server not answering) does
            not, and is left out."""
            found = {s["name"]: s for s in _schedules(base, faults_end)}
            return [t for t in found[SCHEDULE]["scheduleState"]["ticks"] if t["timestamp"] > faults_end]

        # A tick is due every minute: the first one after the faults comes at most a minute after the
        # daemon is back, unless the scheduler is not running.
        ticks = flow.wait("a tick of raw/orders' schedule after the faults", tick_after_faults, 240, 2)
        FIGURES["schedule_tick_s"] = round(time.monotonic() - started)
        first = min(ticks, key=lambda t: float(t["timestamp"]))
        FIGURES["schedule_tick"] = {**first, "after_faults_s": round(first["timestamp"] - faults_end)}
        # Seen: the schedule stops here, so the rest of the module does not start a run pod every minute.
        state = {s["name"]: s for s in _schedules(base)}[SCHEDULE]["scheduleState"]
        stopped = flow.graphql(base, STOP_SCHEDULE, {"id": state["id"]})["stopRunningSchedule"]
        assert stopped.get("scheduleState", {}).get("status") == "STOPPED", stopped

        FIGURES["recovered_s"] = round(time.monotonic() - started)

        after = flow.launch(base, ASSET)
        assert flow.wait_run(base, after, timeout=300) == "SUCCESS", flow.run_messages(base, after)[-15:]
        FIGURES["run_after_s"] = round(time.monotonic() - started)
    FIGURES.update(
        runs=len(ids),
        in_flight_at_fault={run: at_fault[run] for run in in_flight},
        final=final,
        killed_worker=victim,
        records_lost=len(set(ids) - set(found)),
        not_success_reasons=reasons,
        schedules=[s["name"] for s in listed],
    )


def _postgres_pod(c: Cluster, not_uid: str = "") -> dict[str, Any] | None:
    """The StatefulSet's PostgreSQL pod, Running and Ready, unless it is the pod with uid not_uid."""
    pods = [
        p
        for p in flow.pods_of(c, "postgres")
        if p["metadata"]["uid"] != not_uid and p["status"].get("phase") == "Running" and flow.pod_ready(p)
    ]
    return pods[0] if len(pods) == 1 else None


def _claim(pod: dict[str, Any]) -> str:
    """The PersistentVolumeClaim behind the pod's data volume (PostgreSQL's PGDATA)."""
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"].get("volumes", [])
        if v["name"] == "data" and "persistentVolumeClaim" in v
    ]
    if len(claims) != 1:
        raise FlowError(
            f"pod {pod['metadata']['name']} has no claim for its data volume: {pod['spec']['volumes']}"
        )
    return str(claims[0])


@pytest.mark.timeout(1800)
def test_postgres_pod_deleted_under_runs_in_flight_keeps_every_run_record(faults_flow: Cluster) -> None:
    """The PostgreSQL pod itself deleted (not its container killed): the StatefulSet makes a new pod on the
    same PersistentVolumeClaim, and every run record of the instance is still there."""
    c = faults_flow
    figures: dict[str, Any] = FIGURES.setdefault("postgres_pod_deleted", {})
    c.k("wait", "--for=condition=Ready", f"pwf/{flow.WORKFLOW}", "--timeout=5m", timeout=320)
    with c.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        ids = [flow.launch(base, ASSET) for _ in range(2)]

        def in_flight_or_done() -> bool:
            found = _runs(base, ids)
            statuses = set(found.values())
            return "STARTED" in statuses or (len(found) == len(ids) and statuses <= flow.FINISHED)

        # In flight: a run's worker writes its events to PostgreSQL (on a fast machine they may be done).
        flow.wait("a run to start", in_flight_or_done, 600, interval=0.5)
        at_fault = _runs(base, ids)
        # Every record the instance holds: the previous test's runs, the schedule's, these two.
        before = _all_runs(base)
    assert set(ids) <= set(before), (ids, before)
    old = _postgres_pod(c)
    assert old is not None, "no Running and Ready PostgreSQL pod"
    old_uid, claim = old["metadata"]["uid"], _claim(old)
    claim_uid = c.get("pvc", claim)["metadata"]["uid"]

    started = time.monotonic()
    c.k("delete", "pod", old["metadata"]["name"], "--wait=false")
    new = flow.wait(
        "the StatefulSet to make a new PostgreSQL pod, Running and Ready",
        lambda: _postgres_pod(c, not_uid=old_uid),
        600,
        2,
    )
    figures["postgres_back_s"] = round(time.monotonic() - started)
    c.k("wait", "--for=condition=Ready", f"pwf/{flow.WORKFLOW}", "--timeout=5m", timeout=320)
    figures["ready_s"] = round(time.monotonic() - started)

    with c.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        after = flow.wait("the instance to list its runs", lambda: _all_runs(base), 300, 2)
        lost = sorted(set(before) - set(after))
        assert not lost, f"{len(lost)} of {len(before)} run records lost: {lost}"
        final = flow.wait("the runs in flight to end", lambda: _terminal(base, ids), 420, 2)
        figures["runs_terminal_s"] = round(time.monotonic() - started)
        reasons = {
            run: flow.run_messages(base, run)[-3:] for run, status in final.items() if status != "SUCCESS"
        }
        silent = [run for run, messages in reasons.items() if not any(messages)]
        assert not silent, f"runs ended without an event saying why: {silent}"

        new_run = flow.launch(base, ASSET)
        assert flow.wait_run(base, new_run, timeout=300) == "SUCCESS", flow.run_messages(base, new_run)[-15:]
        figures["run_after_s"] = round(time.monotonic() - started)
    # What kept them: the same claim (not a new, empty volume) behind the new pod.
    assert _claim(new) == claim and c.get("pvc", claim)["metadata"]["uid"] == claim_uid, (claim, _claim(new))
    figures.update(
        runs=len(ids),
        at_fault=at_fault,
        final=final,
        records_before=len(before),
        records_lost=len(lost),
        not_success_reasons=reasons,
        claim=claim,
    )
