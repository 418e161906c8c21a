"""Two code locations behind one webserver, a rollout of one, and the run queue, on the real node (issue 11).

Its own operator release and PhloWorkflow `teams` (cluster_flow gives this module a namespace of its own),
with `spec.runCoordinator.maxConcurrentRuns: 2` and two code locations, each from an image of its own
(`make images` with a workflows directory written here, cached by content):
- `sales`: the quickstart's workflows (its dbt gate included) plus the asset e2e/sales_hold; its env sets
  QUICKSTART_ORDERS_CRON to `* * * * *`, so raw/orders' schedule ticks every minute (the first tick launches
  a run of the last partition, later ticks are skipped: the run key is the partition).
- `marketing`: only the asset e2e/marketing_hold.
A hold asset exists only in its location's image; its run logs that location's name, then ends when the name
its `e2e/gate` tag gives resolves in the cluster's DNS (the test creates that Service to release it), or after
`e2e/seconds` when it has no gate.

1. One webserver lists both locations; a run of each succeeds in a pod of its location's image, logging its
   location's marker.
2. While a held run of sales is in progress and raw/orders' schedule ticks, marketing's env changes (54 s into
   a minute, so a tick falls due during the rollout): marketing's code server rolls and the webserver reloads
   it with its new template; the webserver's, the daemon's and sales' Deployments keep their generation, the
   daemon pod is the same and never restarted, sales is not reloaded; the held run is still STARTED on the
   same pod after the rollout and succeeds once released; the schedule's ticks from the last before the change
   to the one due during the rollout fall on consecutive minutes, none failed or missing.
3. Five runs of marketing (5 s each once started) launched at once and sampled every second through the
   instance's GraphQL (runs STARTING, STARTED or CANCELING: what Dagster's queue counts) until all have
   finished: all succeed, never more than two are in progress, and two are at some point.

Mutation check (run once, red): without `runCoordinator` in the spec (Dagster's default of 10), test 3 saw
up to 6 runs in progress at once (the five and the schedule's first run) and failed on `at most 2 runs in
progress, saw 6`.

Measured (2 cores shared with other beds, load 5-18): 11-12 min for the module (setup 65-137 s, the rollout
15-46 s, the five capped runs 6 min); a tick fell due during every rollout and none was missed.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import flow
from tests.e2e.conftest import report_figures
from tests.e2e.flow import Cluster, FlowError
from tests.testbed import realnode
from tests.testbed.realnode import RealNode

VERSION = flow.version()
IMAGE = f"phlo-dagster:{VERSION}"  # the webserver's and the daemon's
IMAGES = {
    "sales": f"phlo-dagster:{VERSION}-e2e-sales",
    "marketing": f"phlo-dagster:{VERSION}-e2e-marketing",
}
WORKFLOW = "teams"
CAP = 2
CRD = "crd/phloworkflows.phlo.dev"
WEBSERVER, DAEMON = f"{WORKFLOW}-webserver", f"{WORKFLOW}-daemon"
CODE = {"sales": f"{WORKFLOW}-code-sales", "marketing": f"{WORKFLOW}-code-marketing"}
# Dagster's run queue counts these as holding a slot (ACTIVE_RUN_STATUSES).
IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")

HOLD = '''"""Only in the {location} location's image: a run that says where it runs, held until released."""

import socket
import time

from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset


def _hold(context):
    context.logger.info("e2e hold: location {location} code")
    gate = context.tags.get("e2e/gate")
    deadline = time.monotonic() + float(context.tags.get("e2e/seconds", "900" if gate else "1"))
    while time.monotonic() < deadline:
        if gate:
            try:
                socket.getaddrinfo(gate, None)
            except OSError:
                pass
            else:
                return MaterializeResult(metadata={{"released": True}})
        time.sleep(1)
    if gate:
        raise RuntimeError(f"e2e hold: {{gate}} never resolved")
    return MaterializeResult(metadata={{"released": False}})


register_asset(
    AssetSpec(key="e2e.{location}_hold", group="e2e", description="A held run.", run=RunSpec(fn=_hold))
)
'''

LOCATIONS_LISTED = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
    ... on PythonError { message }
  }
}
"""
SCHEDULE_TICKS = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        location { name }
        schedules {
          name cronSchedule
          scheduleState { status ticks(limit: 60) { timestamp endTimestamp status } }
        }
      }
    }
  }
}
"""
RUNS_NOW = """
query($ids: [String!], $active: [RunStatus!]) {
  active: runsOrError(filter: {statuses: $active}) { __typename ... on Runs { results { runId } } }
  mine: runsOrError(filter: {runIds: $ids}) { __typename ... on Runs { results { runId status } } }
}
"""

# What the scenario measured (printed with -s, kept as an artifact).
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    report_figures("locations", FIGURES)


def _build_image(location: str, with_quickstart: bool) -> None:
    """`make images` with this location's workflows directory."""
    flow.build_workflow_image(
        IMAGES[location],
        f"workflows-{location}",
        {f"e2e_{location}_hold.py": HOLD.format(location=location)},
        with_quickstart=with_quickstart,
    )


def _workflow() -> dict[str, Any]:
    return {
        "apiVersion": "phlo.dev/v1alpha1",
        "kind": "PhloWorkflow",
        "metadata": {"name": WORKFLOW},
        "spec": {
            "image": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "storage": {"postgres": {"managed": True, "deletionPolicy": "Delete"}},
            "runLauncher": {"jobTTLSeconds": 3600},
            "runCoordinator": {"maxConcurrentRuns": CAP},
            "env": [
                {"name": "PHLO_LOG_LEVEL", "value": "INFO"},
                {"name": "PHLO_DATA_DIR", "value": "/tmp"},
            ],
            "codeLocations": [
                {
                    "name": "sales",
                    "image": IMAGES["sales"],
                    "workflows": {"path": "/app/workflows"},
                    "dbt": {"enabled": True, "projectDir": "/app/dbt", "profilesDir": "/app/dbt"},
                    "env": [{"name": "QUICKSTART_ORDERS_CRON", "value": "* * * * *"}],
                },
                {
                    "name": "marketing",
                    "image": IMAGES["marketing"],
                    "workflows": {"path": "/app/workflows"},
                    "env": [{"name": "E2E_RELEASE", "value": "1"}],
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def teams(node: RealNode, cluster_flow: Cluster) -> Cluster:
    """The operator and the PhloWorkflow `teams` in this module's namespace, Ready: both locations loaded."""
    c = cluster_flow
    started = time.monotonic()
    _build_image("sales", with_quickstart=True)
    _build_image("marketing", with_quickstart=False)
    realnode.load_images(node)
    FIGURES["images_s"] = round(time.monotonic() - started)
    # An earlier module's teardown deletes the CRD without waiting; a release must not meet it terminating.
    c.kubectl("wait", "--for=delete", CRD, "--timeout=120s", check=False, timeout=150)
    started = time.monotonic()
    flow.install_operator(c)
    c.k("apply", "-f", "-", input=json.dumps(_workflow()))
    c.k("wait", "--for=condition=Ready", f"pwf/{WORKFLOW}", "--timeout=15m", timeout=960)
    FIGURES["ready_s"] = round(time.monotonic() - started)
    return c


def _locations(c: Cluster) -> dict[str, dict[str, Any]]:
    wf = c.get("pwf", WORKFLOW)
    return {e["name"]: e for e in (wf.get("status") or {}).get("codeLocations") or []}


def _generations(c: Cluster) -> dict[str, int]:
    names = [WEBSERVER, DAEMON, *CODE.values()]
    found = c.get("deployments", *names)
    items = found["items"] if "items" in found else [found]
    return {d["metadata"]["name"]: int(d["metadata"]["generation"]) for d in items}


def _one_pod(c: Cluster, component: str, location: str | None = None) -> dict[str, Any]:
    selector = f"app.kubernetes.io/instance={WORKFLOW},app.kubernetes.io/component={component}"
    if location:
        selector += f",phlo.dev/code-location={location}"
    pods = [p for p in c.get("pods", "-l", selector)["items"] if p["status"].get("phase") == "Running"]
    if len(pods) != 1:
        raise FlowError(f"expected one Running {component} pod: {[p['metadata']['name'] for p in pods]}")
    return dict(pods[0])


def _restarts(pod: dict[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses") or [])


def _status(base: str, run_id: str) -> str:
    return str(flow.graphql(base, flow.RUN, {"runId": run_id})["runOrError"].get("status"))


def _ticks(base: str) -> list[dict[str, Any]]:
    """The ticks of sales' every-minute schedule (raw/orders'), oldest first."""
    repos = flow.graphql(base, SCHEDULE_TICKS)["repositoriesOrError"]
    schedules = [
        s
        for repo in repos.get("nodes", [])
        if repo["location"]["name"] == "sales"
        for s in repo["schedules"]
        if s["cronSchedule"] == "* * * * *"
    ]
    if len(schedules) != 1:
        raise FlowError(f"expected one every-minute schedule in sales: {schedules}")
    state = schedules[0]["scheduleState"]
    if state["status"] != "RUNNING":
        raise FlowError(f"the schedule {schedules[0]['name']} is {state['status']}")
    return sorted(state["ticks"], key=lambda t: t["timestamp"])


def _done(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in ticks if t["status"] != "STARTED"]


# Each test sets up or rolls pods and waits for runs on a loaded 2-core machine: above the suite's 900 s.
@pytest.mark.timeout(2700)
def test_one_webserver_serves_both_locations_and_each_run_takes_its_image(teams: Cluster) -> None:
    c = teams
    entries = _locations(c)
    assert sorted(entries) == ["marketing", "sales"], entries
    for name, entry in entries.items():
        assert entry["image"] == IMAGES[name] and entry.get("loaded") is True, entry
    assert len(flow.pods_of(c, "webserver", WORKFLOW)) == 1
    with c.port_forward(f"svc/{WEBSERVER}", 3000) as base:
        repos = flow.graphql(base, LOCATIONS_LISTED)["repositoriesOrError"]
        assert sorted(r["location"]["name"] for r in repos["nodes"]) == ["marketing", "sales"], repos
        assets: dict[str, set[str]] = {}
        for location, _, node in flow.asset_nodes(base):
            assets.setdefault(location, set()).add("/".join(node["assetKey"]["path"]))
        assert {"raw/orders", "e2e/sales_hold"} <= assets["sales"], assets
        # Both images carry the quickstart's plugin (ref/regions); only sales' has the quickstart's workflows.
        assert "e2e/marketing_hold" in assets["marketing"], assets
        assert not assets["marketing"] & {"raw/orders", "e2e/sales_hold"}, assets
        started = time.monotonic()
        runs = {name: flow.launch(base, f"e2e/{name}_hold") for name in IMAGES}
        for name, run_id in runs.items():
            status = flow.wait_run(base, run_id, timeout=900)
            messages = flow.run_messages(base, run_id)
            assert status == "SUCCESS", messages[-15:]
            assert any(f"e2e hold: location {name} code" in m for m in messages), messages[-20:]
        FIGURES["one_run_each_s"] = round(time.monotonic() - started)
    for name, run_id in runs.items():
        pods = flow.run_pods(c, run_id)
        assert pods, f"no pod of run {run_id}"
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {IMAGES[name]}, (name, run_id)


@pytest.mark.timeout(2700)
def test_rolling_one_location_leaves_the_other_runs_and_the_schedule_running(teams: Cluster) -> None:
    c = teams
    gate = f"e2e-gate-{secrets.token_hex(3)}"
    with c.port_forward(f"svc/{WEBSERVER}", 3000) as base:
        flow.wait("a finished tick of sales' schedule", lambda: _done(_ticks(base)), 300, interval=5)
        held = flow.launch(base, "e2e/sales_hold", {"e2e/gate": gate})
        flow.wait(f"run {held} to start", lambda: _status(base, held) == "STARTED", 900, interval=2)
    held_pod = next(p for p in flow.run_pods(c, held) if p["status"].get("phase") == "Running")
    before = _generations(c)
    daemon = _one_pod(c, "daemon")
    entries = _locations(c)
    # 57.5 s into a minute: the rollout (a new pod, its gRPC server loading, readiness, a reload) takes longer
    # than 2.5 s (5-13 s seen), so the next minute's tick falls due while it runs.
    flow.wait("57.5 s into a minute", lambda: 57.5 <= time.time() % 60 < 58.5, 70, interval=0.1)
    t0 = time.time()
    patch = [{"op": "replace", "path": "/spec/codeLocations/1/env/0/value", "value": "2"}]
    c.k("patch", "pwf", WORKFLOW, "--type=json", "-p", json.dumps(patch))

    def rolled() -> dict[str, Any] | None:
        entry = _locations(c)["marketing"]
        fresh = entry.get("templateHash") not in (None, entries["marketing"].get("templateHash"))
        served = entry.get("reloadedHash") == entry.get("templateHash") and entry.get("loaded") is True
        deploy = c.get("deployment", CODE["marketing"])
        settled = (
            deploy["status"].get("updatedReplicas")
            == deploy["status"].get("replicas")
            == 1
            == (deploy["status"].get("availableReplicas"))
        )
        return entry if fresh and served and settled else None

    rolled_entry = flow.wait("marketing to roll and reload", rolled, 900, interval=1)
    t1 = time.time()
    FIGURES["rollout_s"] = round(t1 - t0, 1)
    after = _generations(c)
    assert after[CODE["marketing"]] > before[CODE["marketing"]], (before, after)
    unchanged = [WEBSERVER, DAEMON, CODE["sales"]]
    assert {n: after[n] for n in unchanged} == {n: before[n] for n in unchanged}, (before, after)
    now = _one_pod(c, "daemon")
    assert now["metadata"]["uid"] == daemon["metadata"]["uid"], "the daemon pod was replaced"
    assert _restarts(now) == _restarts(daemon), "the daemon restarted"
    sales = _locations(c)["sales"]
    assert (sales["templateHash"], sales["reloadedHash"]) == (
        entries["sales"]["templateHash"],
        entries["sales"]["reloadedHash"],
    ), (entries["sales"], sales)
    assert rolled_entry["image"] == IMAGES["marketing"]

    with c.port_forward(f"svc/{WEBSERVER}", 3000) as base:
        # The held run of the other location went through the rollout on its pod, and is still running.
        assert _status(base, held) == "STARTED", _status(base, held)
        pods = flow.run_pods(c, held)
        assert [p["metadata"]["uid"] for p in pods] == [held_pod["metadata"]["uid"]], pods
        assert pods[0]["status"].get("phase") == "Running" and _restarts(pods[0]) == 0
        gate_service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": gate},
            "spec": {"ports": [{"port": 80}]},
        }
        c.k("apply", "-f", "-", input=json.dumps(gate_service))
        assert flow.wait_run(base, held, timeout=600) == "SUCCESS", flow.run_messages(base, held)[-15:]

        # Ticks: wait for the one due during the rollout to finish; none since the last before it is missing.
        def ticked_during_rollout() -> list[dict[str, Any]] | None:
            done = _done(_ticks(base))
            return done if any(t0 <= t["timestamp"] <= t1 for t in done) else None

        ticks = flow.wait("the tick due during the rollout to finish", ticked_during_rollout, 300, interval=2)
    first = max(t["timestamp"] for t in ticks if t["timestamp"] <= t0)
    window = [t for t in ticks if first <= t["timestamp"] <= t1]
    stamps = [round(t["timestamp"]) for t in window]
    FIGURES["ticks"] = [
        {
            "due": time.strftime("%H:%M:%S", time.gmtime(t["timestamp"])),
            "status": t["status"],
            "lag_s": round((t["endTimestamp"] or t["timestamp"]) - t["timestamp"], 1),
        }
        for t in window
    ]
    FIGURES["rollout_window"] = [time.strftime("%H:%M:%S", time.gmtime(x)) for x in (t0, t1)]
    assert [b - a for a, b in itertools.pairwise(stamps)] == [60] * (len(stamps) - 1), stamps
    assert any(t0 <= t["timestamp"] <= t1 for t in window), (FIGURES["rollout_window"], FIGURES["ticks"])
    assert all(t["status"] in ("SUCCESS", "SKIPPED") for t in window), FIGURES["ticks"]


@pytest.mark.timeout(2700)
def test_max_concurrent_runs_keeps_at_most_two_in_progress(teams: Cluster) -> None:
    c = teams
    samples: list[int] = []
    with c.port_forward(f"svc/{WEBSERVER}", 3000) as base:
        started = time.monotonic()
        ids = [flow.launch(base, "e2e/marketing_hold", {"e2e/seconds": "5"}) for _ in range(5)]

        def finished() -> dict[str, str] | None:
            now = flow.graphql(base, RUNS_NOW, {"ids": ids, "active": list(IN_PROGRESS)})
            if now["active"]["__typename"] != "Runs" or now["mine"]["__typename"] != "Runs":
                raise FlowError(f"runsOrError: {now}")
            samples.append(len(now["active"]["results"]))
            mine = {r["runId"]: r["status"] for r in now["mine"]["results"]}
            return mine if len(mine) == len(ids) and set(mine.values()) <= flow.FINISHED else None

        final = flow.wait("the five runs to finish", finished, 1200, interval=1)
        FIGURES["five_runs_s"] = round(time.monotonic() - started)
    FIGURES["in_progress_samples"] = len(samples)
    FIGURES["max_in_progress"] = max(samples)
    FIGURES["samples_at_two"] = samples.count(2)
    assert set(final.values()) == {"SUCCESS"}, final
    assert max(samples) <= CAP, f"at most {CAP} runs in progress, saw {max(samples)}: {samples}"
    assert CAP in samples, f"never {CAP} runs in progress at once: {samples}"
