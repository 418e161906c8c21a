"""An upgrade across two Dagster versions on the real node (issue 11): the migration runs once, first.

Its own operator release and PhloWorkflow `upgrade` (cluster_flow gives this module a namespace of its own),
dbt off, its managed PostgreSQL kept for the whole module:
1. `spec.image` is the previous image (`make images`: tests/images/previous, Dagster one family back, whose
   schema head is older than the lock's Dagster). The workflow becomes Ready, the version gate reports that
   Dagster, no migrate Job exists (a new database is created at its own head), and a run succeeds on it.
2. `spec.image` moves to an image of the lock's Dagster with the same workflows. Polled every second until
   both moved: while the webserver and the daemon still run the previous image a migrate Job appears; when
   either has moved, exactly one migrate Job exists and it has completed. Then: the workflow is Ready,
   `status.instance` says the new version, migrated from the previous one, at the new schema head; the
   database itself (alembic_version, read in the PostgreSQL pod) holds that head; the new ReplicaSets of the
   webserver and the daemon were created after the Job completed; the run from step 1 is still recorded
   as a success; a new run succeeds in a pod of the new image and logs the new Dagster version; still one
   migrate Job.

Its first run (2026-12-07) was red on a real bug the kwok test could not see: the migrate Job failed three
times (`dagster instance migrate` built the K8sRunLauncher, which wanted an in-cluster token), so the
webserver and the daemon never moved (tests/integration/test_migrate_script.py tests the fix). After it:
2 passed in 157 s (the workflow Ready on 1.12.8 in 38 s, moved 22 s after the patch, Ready 46 s after it).
What goes red: without the migration (the kwok test's mutation, tests/integration/test_instance_upgrade.py:
the webserver and daemon rendered from spec.image at once) no migrate Job exists when they move; without the
version gate reading the image, status.instance keeps the previous version; without `dagster instance migrate`
the database stays at the previous head.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e import flow
from tests.e2e.conftest import report_figures
from tests.e2e.flow import Cluster, FlowError
from tests.images import build, lock
from tests.testbed import realnode
from tests.testbed.realnode import RealNode

VERSION = flow.version()
PREVIOUS = build.previous_image()
CURRENT = f"phlo-dagster:{VERSION}-e2e-upgrade"
WORKFLOW = "upgrade"
CRD = "crd/phloworkflows.phlo.dev"
ASSET = "e2e/dagster_version"
WORKFLOWS = build.HERE / "previous" / "workflows"
FIGURES: dict[str, Any] = {}


def _dagster() -> str:
    return next(version for name, version, _ in lock.pins() if name == "dagster")


@pytest.fixture(scope="module")
def upgrade(node: RealNode, cluster_flow: Cluster) -> Cluster:
    """The operator and PhloWorkflow `upgrade` on the previous Dagster, Ready."""
    c = cluster_flow
    started = time.monotonic()
    files = {p.name: p.read_text() for p in WORKFLOWS.glob("*.py")}
    flow.build_workflow_image(CURRENT, "upgrade", files, with_quickstart=False)
    realnode.load_images(node)
    FIGURES["image_s"] = round(time.monotonic() - started)
    c.kubectl("wait", "--for=delete", CRD, "--timeout=120s", check=False, timeout=150)
    started = time.monotonic()
    flow.install_operator(c)
    flow.apply_quickstart(c, PREVIOUS, name=WORKFLOW, spec={"dbt": {"enabled": False}})
    FIGURES["ready_previous_s"] = round(time.monotonic() - started)
    return c


def _status(c: Cluster) -> dict[str, Any]:
    return dict(c.get("pwf", WORKFLOW).get("status") or {})


def _condition(c: Cluster, kind: str) -> dict[str, Any]:
    found = [x for x in _status(c).get("conditions", []) if x["type"] == kind]
    if not found:
        raise FlowError(f"no {kind} condition on pwf/{WORKFLOW}")
    return dict(found[0])


def _migrate_jobs(c: Cluster) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={WORKFLOW},app.kubernetes.io/component=instance-migrate"
    return list(c.get("jobs", "-l", selector)["items"])


def _completed_at(job: dict[str, Any]) -> datetime | None:
    done = any(
        x["type"] == "Complete" and x["status"] == "True" for x in job.get("status", {}).get("conditions", [])
    )
    stamp = job.get("status", {}).get("completionTime")
    return _time(stamp) if done and stamp else None


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _image(c: Cluster, component: str) -> str:
    deployment = c.get("deployment", f"{WORKFLOW}-{component}")
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def _replica_set_of(c: Cluster, component: str, image: str) -> dict[str, Any]:
    selector = f"app.kubernetes.io/instance={WORKFLOW},app.kubernetes.io/component={component}"
    sets = [
        rs
        for rs in c.get("replicasets", "-l", selector)["items"]
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image
    ]
    if len(sets) != 1:
        raise FlowError(
            f"expected one {component} ReplicaSet of {image}: {[s['metadata']['name'] for s in sets]}"
        )
    return dict(sets[0])


def _database_revision(c: Cluster) -> str:
    (pod,) = flow.pods_of(c, "postgres", name=WORKFLOW)
    query = (
        'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA '
        "-c 'select version_num from alembic_version'"
    )
    return c.k("exec", pod["metadata"]["name"], "--", "sh", "-c", query).stdout.strip()


def _run_on(c: Cluster, version: str) -> str:
    with c.port_forward(f"svc/{WORKFLOW}-webserver", 3000) as base:
        flow.wait(f"the webserver to list {ASSET}", lambda: ASSET in flow.asset_keys(base), 300)
        run_id, messages = flow.materialize(c, base, ASSET)
    assert any(f"e2e ran on dagster {version}" in m for m in messages), messages[-20:]
    return run_id


# Each test sets up or rolls pods and waits for runs on a loaded 2-core machine: above the suite's 900 s.
@pytest.mark.timeout(2400)
def test_the_previous_dagster_serves_and_runs(upgrade: Cluster) -> None:
    c = upgrade
    previous = build.previous_dagster()
    instance = _status(c).get("instance") or {}
    assert instance.get("image") == PREVIOUS and instance.get("dagsterVersion") == previous, instance
    assert instance.get("schemaHead"), instance
    migrated = _condition(c, "Migrated")
    assert (migrated["status"], migrated["reason"]) == ("True", "UpToDate"), migrated
    assert _migrate_jobs(c) == []
    assert _database_revision(c) == instance["schemaHead"]
    started = time.monotonic()
    run_id = _run_on(c, previous)
    FIGURES["run_previous_s"] = round(time.monotonic() - started)
    FIGURES.update(previous_run=run_id, previous_head=instance["schemaHead"])
    (pod,) = flow.run_pods(c, run_id)
    assert pod["spec"]["containers"][0]["image"] == PREVIOUS


@pytest.mark.timeout(2400)
def test_a_new_dagster_migrates_once_before_the_webserver_and_daemon_move(upgrade: Cluster) -> None:
    c = upgrade
    previous, current = build.previous_dagster(), _dagster()
    seen_waiting = False

    def moved() -> bool:
        nonlocal seen_waiting
        images = {_image(c, "webserver"), _image(c, "daemon")}
        jobs = _migrate_jobs(c)  # read after the Deployments: a Job seen complete here finished before
        if images == {PREVIOUS}:
            seen_waiting = seen_waiting or bool(jobs)
            return False
        # One pass applies both, one after the other: either may be read moved first.
        if not (len(jobs) == 1 and _completed_at(jobs[0])):
            raise AssertionError(f"the Deployments moved before the migration finished: {images}, {jobs}")
        return images == {CURRENT}

    started = time.monotonic()
    c.k("patch", "pwf", WORKFLOW, "--type=merge", "-p", json.dumps({"spec": {"image": CURRENT}}))
    flow.wait("the webserver and the daemon on the new image", moved, 1200, interval=1)
    FIGURES["moved_s"] = round(time.monotonic() - started)
    assert seen_waiting, "never saw the migrate Job while the webserver and the daemon waited"
    c.k("wait", "--for=condition=Ready", f"pwf/{WORKFLOW}", "--timeout=15m", timeout=960)
    FIGURES["ready_current_s"] = round(time.monotonic() - started)

    instance = _status(c)["instance"]
    assert instance["image"] == CURRENT and instance["dagsterVersion"] == current, instance
    assert instance["migratedFrom"] == previous, instance
    head = instance["schemaHead"]
    assert instance["schemaVersion"] == head != FIGURES["previous_head"], instance
    assert _database_revision(c) == head
    migrated = _condition(c, "Migrated")
    assert (migrated["status"], migrated["reason"]) == ("True", "InstanceMigrated"), migrated

    (job,) = _migrate_jobs(c)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == CURRENT
    finished = _completed_at(job)
    assert finished is not None, job.get("status")
    for component in ("webserver", "daemon"):
        created = _time(_replica_set_of(c, component, CURRENT)["metadata"]["creationTimestamp"])
        assert created >= finished, (
            f"the {component}'s new ReplicaSet ({created}) before the Job ({finished})"
        )

    with c.port_forward(f"svc/{WORKFLOW}-webserver", 3000) as base:
        earlier = flow.graphql(base, flow.RUN, {"runId": FIGURES["previous_run"]})["runOrError"]
    assert earlier.get("status") == "SUCCESS", earlier
    started = time.monotonic()
    run_id = _run_on(c, current)
    FIGURES["run_current_s"] = round(time.monotonic() - started)
    (pod,) = flow.run_pods(c, run_id)
    assert pod["spec"]["containers"][0]["image"] == CURRENT
    assert len(_migrate_jobs(c)) == 1
    FIGURES.update(migrate_job=job["metadata"]["name"], head=head, previous=previous, current=current)
    report_figures("upgrade", FIGURES)
