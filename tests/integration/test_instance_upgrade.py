"""Instance upgrades on the test bed (a real API server and Job controller, kwok for the kubelet): a new
Dagster version in spec.image runs the migrate Job before the webserver and daemon Deployments change, once;
a failed migration keeps them on the old image and says why.

kwok writes annotation kwok.phlo.dev/message into a Job pod's termination message (tests/testbed/
kwok-stages.yaml), so spec.daemon.podAnnotations (which the version gate and migrate Job carry) choose what
"the image" reports; a migrate pod for version kwok-fail fails.

Mutation run once: rendering the webserver and daemon with spec.image (Facts.instance_image ignored in
render/bundle.py) turns this test red (the webserver is on the new image while no migrate Job exists)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration import test_operator as base
from tests.integration.test_operator import NAME, Kubectl, Operator, apply_quickstart, wait_for

kc, operator, reload_recorder, volume = base.kc, base.operator, base.reload_recorder, base.volume

pytestmark = pytest.mark.integration
OLD, NEW, BROKEN = "phlo-dagster:0.4.0", "phlo-dagster:0.4.1", "phlo-dagster:0.4.2"


def reports(**fields: str) -> dict[str, Any]:
    return {"podAnnotations": {"kwok.phlo.dev/message": json.dumps(fields)}}


def image(kc: Kubectl, component: str) -> str:
    return str(kc.must("deploy", f"{NAME}-{component}")["spec"]["template"]["spec"]["containers"][0]["image"])


def migrate_jobs(kc: Kubectl) -> list[dict[str, Any]]:
    return kc.items("job", f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=instance-migrate")


def complete(job: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Complete" and c["status"] == "True" for c in job.get("status", {}).get("conditions", [])
    )


def instance(kc: Kubectl) -> dict[str, Any]:
    return dict((kc.must("pwf", NAME).get("status") or {}).get("instance") or {})


def test_a_new_dagster_version_migrates_once_before_the_webserver_and_daemon_move(
    kc: Kubectl, operator: Operator, volume: str
) -> None:
    apply_quickstart(kc, image=OLD, dbt={"enabled": False}, daemon=reports(dagsterVersion="1.0.0"))
    kc.wait_condition("Ready", timeout=180)
    wait_for("the version recorded", lambda: instance(kc).get("dagsterVersion") == "1.0.0", timeout=60)
    assert migrate_jobs(kc) == []  # a new database is created at its schema
    assert kc.condition("Migrated")["reason"] == "UpToDate"

    kc.patch({"spec": {"image": NEW, "daemon": reports(dagsterVersion="2.0.0", schemaVersion="rev-b")}})
    seen_waiting = False

    def moved() -> bool:
        nonlocal seen_waiting
        images = {image(kc, "webserver"), image(kc, "daemon")}
        jobs = migrate_jobs(kc)  # read after the Deployments: a Job seen complete here finished before
        if images == {OLD}:
            seen_waiting = seen_waiting or bool(jobs)
            return False
        # One of them may be read moved and the other not yet (one pass applies both, one after the other);
        # whichever moved, the migration had finished.
        assert len(jobs) == 1 and complete(jobs[0]), "the Deployments moved before the migration finished"
        return images == {NEW}

    wait_for("the webserver and daemon on the new image", moved, timeout=120)
    assert seen_waiting, "never saw the migrate Job while the webserver and daemon waited"
    kc.wait_condition("Ready", timeout=120)
    status = instance(kc)
    assert status["image"] == NEW and status["dagsterVersion"] == "2.0.0", status
    assert status["schemaVersion"] == "rev-b" and status["migratedFrom"] == "1.0.0", status
    migrated = kc.condition("Migrated")
    assert (migrated["status"], migrated["reason"]) == ("True", "InstanceMigrated"), migrated
    (job,) = migrate_jobs(kc)
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["image"] == NEW and main["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(e["reason"] == "InstanceMigrated" for e in kc.events())

    # A migration that fails keeps the old image serving and says why.
    kc.patch({"spec": {"image": BROKEN, "daemon": reports(dagsterVersion="kwok-fail")}})
    kc.wait_condition("Migrated", "False", timeout=120)
    migrated = kc.condition("Migrated")
    assert migrated["reason"] == "MigrationFailed" and "failed on purpose" in migrated["message"], migrated
    assert kc.condition("Degraded")["reason"] == "MigrationFailed"
    assert image(kc, "webserver") == NEW and image(kc, "daemon") == NEW
    assert kc.condition("WebserverReady")["status"] == "True"
    assert instance(kc)["image"] == NEW
    assert len(migrate_jobs(kc)) == 2
