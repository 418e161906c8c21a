"""Instance upgrades against the in-memory API server: the version gate, the migrate Job before the webserver
and daemon move, a failed migration keeping the old image (tests/integration/test_instance_upgrade.py proves
the ordering on a real API server).

Mutation run once: rendering the webserver and daemon with spec.image (Facts.instance_image ignored) turns
test_a_new_dagster_version_migrates_before_the_webserver_and_daemon_move and
test_a_failed_migration_keeps_the_old_image_serving_and_says_why red."""

from __future__ import annotations

import json
from typing import Any

import pytest
from phlo_operator.render import instance as instance_render

from tests.unit.fake_kube import FakeKube
from tests.unit.test_reconcile import CODE_SERVER, NS, WEBSERVER, Bed

pytestmark = pytest.mark.unit
DAEMON = ("apps/v1", "Deployment", NS, "demo-daemon")
OLD, NEW = "phlo-dagster:0.1.0", "phlo-dagster:0.2.0"
GATE, MIGRATE = "dagster-version", "instance-migrate"


def image_of(kube: FakeKube, ref: tuple[str, str, str, str]) -> str:
    live = kube.get(ref)
    assert live is not None
    return str(live["spec"]["template"]["spec"]["containers"][0]["image"])


def jobs(kube: FakeKube, component: str) -> list[dict[str, Any]]:
    return [
        j for j in kube.kind("Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def say(**fields: str) -> str:
    return json.dumps(fields)


def running(version: str = "1.10.0") -> Bed:
    """A Ready workflow on OLD whose gate read `version`."""
    bed = Bed(dbt={"enabled": False})
    bed.run()
    bed.kube.finish_job(component=GATE, message=say(dagsterVersion=version, schemaHead="rev-a"))
    bed.ready()
    return bed


def test_a_new_workflow_records_its_version_and_migrates_nothing() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.run()
    assert image_of(bed.kube, WEBSERVER) == OLD  # nothing waits on a new workflow
    (gate,) = jobs(bed.kube, GATE)
    assert gate["spec"]["template"]["spec"]["containers"][0]["image"] == OLD
    assert bed.status()["instance"] == {"image": OLD}
    bed.kube.finish_job(component=GATE, message=say(dagsterVersion="1.10.0", schemaHead="rev-a"))
    bed.run()
    assert bed.status()["instance"] == {"image": OLD, "dagsterVersion": "1.10.0", "schemaHead": "rev-a"}
    assert bed.condition("Migrated")["status"] == "True"
    assert bed.condition("Migrated")["reason"] == "UpToDate"
    assert jobs(bed.kube, MIGRATE) == []
    writes = len(bed.kube.writes)
    bed.run()  # recorded: no second gate, no write
    assert len(bed.kube.writes) == writes and len(jobs(bed.kube, GATE)) == 1


def test_a_new_dagster_version_migrates_before_the_webserver_and_daemon_move() -> None:
    bed = running()
    bed.patch_spec(image=NEW)
    bed.run()
    # The gate reads the new image's version; everything on spec.image waits.
    assert [j["metadata"]["name"] for j in jobs(bed.kube, GATE)][-1] == instance_render.gate_name(
        bed.wf(), NEW
    )
    assert bed.condition("Migrated")["reason"] == "ReadingVersion"
    for ref in (WEBSERVER, DAEMON, CODE_SERVER):
        assert image_of(bed.kube, ref) == OLD
    bed.kube.finish_job(component=GATE, message=say(dagsterVersion="1.11.0", schemaHead="rev-b"))
    bed.run()
    (job,) = jobs(bed.kube, MIGRATE)
    assert job["metadata"]["name"] == instance_render.migrate_name(bed.wf(), NEW, "1.11.0")
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["image"] == NEW and '"instance", "migrate"' in main["command"][-1]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The storage Secret by reference only; dagster.yaml mounted from the rendered ConfigMap.
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in main["env"] if "valueFrom" in e]
    assert "demo-postgres" in refs and all(
        "value" not in e for e in main["env"] if e["name"].startswith("DAGSTER_PG")
    )
    assert {"name": "instance", "configMap": {"name": "demo-instance"}} in pod["volumes"]
    assert bed.condition("Migrated")["reason"] == "Migrating"
    assert bed.condition("Progressing")["reason"] == "Migrating"
    assert "InstanceMigrationStarted" in bed.kube.reasons()
    for ref in (WEBSERVER, DAEMON, CODE_SERVER):
        assert image_of(bed.kube, ref) == OLD
    bed.run()  # a restart finds the same Job
    assert len(jobs(bed.kube, MIGRATE)) == 1
    bed.kube.finish_job(component=MIGRATE, message=say(dagsterVersion="1.11.0", schemaVersion="rev-b"))
    bed.run()
    for ref in (WEBSERVER, DAEMON, CODE_SERVER):
        assert image_of(bed.kube, ref) == NEW
    instance = bed.status()["instance"]
    assert instance["image"] == NEW and instance["dagsterVersion"] == "1.11.0"
    assert instance["schemaVersion"] == "rev-b" and instance["migratedFrom"] == "1.10.0"
    migrated = bed.condition("Migrated")
    assert (migrated["status"], migrated["reason"]) == ("True", "InstanceMigrated")
    assert "1.10.0 to 1.11.0" in migrated["message"] and "InstanceMigrated" in bed.kube.reasons()
    bed.kube.settle()
    bed.run()
    bed.run()
    assert len(jobs(bed.kube, MIGRATE)) == 1  # once


def test_the_same_dagster_version_moves_without_a_migration() -> None:
    bed = running()
    bed.patch_spec(image=NEW)
    bed.run()
    assert image_of(bed.kube, WEBSERVER) == OLD
    bed.kube.finish_job(component=GATE, message=say(dagsterVersion="1.10.0"))
    bed.run()
    assert image_of(bed.kube, WEBSERVER) == NEW and image_of(bed.kube, DAEMON) == NEW
    assert jobs(bed.kube, MIGRATE) == []
    assert bed.status()["instance"]["image"] == NEW
    assert bed.condition("Migrated")["reason"] == "UpToDate"


def test_a_failed_migration_keeps_the_old_image_serving_and_says_why() -> None:
    bed = running()
    bed.patch_spec(image=NEW)
    bed.run()
    bed.kube.finish_job(component=GATE, message=say(dagsterVersion="1.11.0"))
    bed.run()
    error = "sqlalchemy.exc.OperationalError: connection to postgresql://dagster:hunter2@db:5432 refused"
    bed.kube.finish_job(ok=False, component=MIGRATE, message=say(error=error))
    bed.run()
    migrated = bed.condition("Migrated")
    assert (migrated["status"], migrated["reason"]) == ("False", "MigrationFailed")
    assert "connection to postgresql://dagster:***@db:5432 refused" in migrated["message"]
    assert "hunter2" not in json.dumps(bed.status())
    assert bed.condition("Degraded")["reason"] == "MigrationFailed"
    for ref in (WEBSERVER, DAEMON, CODE_SERVER):
        assert image_of(bed.kube, ref) == OLD
    assert bed.status()["instance"]["image"] == OLD
    assert bed.kube.reasons().count("InstanceMigrationFailed") == 1
    bed.run()  # said once; still held
    assert bed.kube.reasons().count("InstanceMigrationFailed") == 1
    assert image_of(bed.kube, WEBSERVER) == OLD


def test_a_failed_version_gate_keeps_the_old_image() -> None:
    bed = running()
    bed.patch_spec(image=NEW)
    bed.run()
    bed.kube.finish_job(ok=False, component=GATE)
    bed.run()
    assert bed.condition("Migrated")["reason"] == "VersionGateFailed"
    assert bed.condition("Degraded")["reason"] == "VersionGateFailed"
    assert image_of(bed.kube, WEBSERVER) == OLD and jobs(bed.kube, MIGRATE) == []


def test_a_code_location_on_another_image_does_not_wait() -> None:
    bed = running()
    bed.patch_spec(image=NEW, codeServer={"image": "team/code:7"})
    bed.run()
    assert image_of(bed.kube, WEBSERVER) == OLD
    assert image_of(bed.kube, CODE_SERVER) == "team/code:7"


def test_the_reports_are_json_objects_with_credentials_masked() -> None:
    assert instance_render.report('{"error": "postgresql://u:p@h/db down"}') == {
        "error": "postgresql://u:***@h/db down"
    }
    assert instance_render.report("not json") == {} and instance_render.report("[1]") == {}
    assert instance_render.report(None) == {}
