"""Bad input only the cluster can reveal, on the in-memory API server: missing env sources and
ServiceAccounts, a malformed storage Secret, a compile that fails, a run namespace that cannot be written.
Each message names the spec field; no message carries a Secret's value."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from phlo_operator.apply import ApiError

from tests.unit.test_reconcile import NS, Bed

pytestmark = pytest.mark.unit


def _secret(name: str, **values: str) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": data}


STORAGE = {"host": "db", "port": "5432", "user": "u", "password": "p-secret-value", "database": "d"}


def test_missing_env_sources_and_service_account_are_named_until_they_exist() -> None:
    """Mutation (2026-12-06): references() returning Found(None) failed this test (Ready=True, Degraded
    AsExpected)."""
    env = [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "b", "optional": True}}},
    ]
    bed = Bed(
        env=env,
        envFrom=[{"configMapRef": {"name": "more"}}],
        serviceAccountName="runner",
        dbt={"enabled": False},
    )
    bed.ready_pods()
    message = bed.condition("Degraded")["message"]
    assert bed.condition("Degraded")["reason"] == "ReferenceNotFound"
    assert bed.condition("Ready") | {"status": "False", "reason": "ReferenceNotFound"} == bed.condition(
        "Ready"
    )
    assert "spec.env[0].valueFrom.secretKeyRef: Secret 'api' not found" in message
    assert "spec.envFrom[0].configMapRef: ConfigMap 'more' not found" in message
    assert "spec.serviceAccountName: ServiceAccount 'runner' not found" in message
    assert "settings" not in message  # optional
    assert bed.kube.kind("Deployment"), "children are applied anyway: they start once the sources exist"

    bed.kube.add(_secret("api", other="x"))
    bed.run()
    assert "Secret 'api' has no key 'token'" in bed.condition("Degraded")["message"]
    bed.kube.add(_secret("api", token="t"))
    bed.kube.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "more", "namespace": NS}})
    bed.kube.add(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner", "namespace": NS}}
    )
    bed.run()
    assert bed.condition("Degraded")["status"] == "False"
    bed.kube.settle()  # the sources' content is new to the pods: they rolled
    bed.run()
    assert bed.condition("Ready")["status"] == "True"


def test_missing_env_sources_of_a_component_are_named_with_its_field() -> None:
    bed = Bed(
        dbt={"enabled": False},
        daemon={"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "daemon-api", "key": "t"}}}]},
        runLauncher={"runs": {"envFrom": [{"secretRef": {"name": "run-creds"}}]}},
    )
    bed.ready_pods()
    message = bed.condition("Degraded")["message"]
    assert bed.condition("Degraded")["reason"] == "ReferenceNotFound"
    assert "spec.daemon.env[0].valueFrom.secretKeyRef: Secret 'daemon-api' not found" in message
    assert "spec.runLauncher.runs.envFrom[0].secretRef: Secret 'run-creds' not found" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"port": "five"}, "key port is not a port number (1-65535)"),
        ({"port": "70000"}, "key port is not a port number"),
        ({"host": ""}, "key host is empty"),
        ({"host": "db\n"}, "key host holds spaces or control characters"),
        ({"database": ""}, "key database is empty"),
    ],
)
def test_a_malformed_storage_secret_names_the_key_not_the_value(
    values: dict[str, str], expected: str
) -> None:
    bed = Bed(storage={"postgres": {"secretName": "team-pg"}})
    bed.kube.add(_secret("team-pg", **{**STORAGE, **values}))
    bed.run()
    degraded = bed.condition("Degraded")
    assert degraded["reason"] == "StorageSecretInvalid"
    assert degraded["message"].startswith("spec.storage.postgres.secretName: Secret 'team-pg': ")
    assert expected in degraded["message"]
    for value in values.values():
        if len(value) > 2:
            assert value.strip() not in degraded["message"]


def test_a_good_storage_secret_passes() -> None:
    bed = Bed(storage={"postgres": {"secretName": "team-pg"}})
    bed.kube.add(_secret("team-pg", **STORAGE))
    bed.ready()
    assert bed.condition("StorageReady")["reason"] == "ExternalSecret"


def test_a_failed_compile_names_the_inputs_it_compiled() -> None:
    bed = Bed(dbt={"enabled": True, "projectDir": "/app/elsewhere", "target": "prod"})
    bed.run()
    bed.kube.finish_job(ok=False)
    bed.run()
    message = bed.condition("Degraded")["message"]
    assert bed.condition("Degraded")["reason"] == "DbtCompileFailed"
    assert "compiled: spec.dbt.projectDir /app/elsewhere, spec.dbt.target prod, spec.image " in message


def test_a_run_namespace_that_cannot_be_written_is_named() -> None:
    bed = Bed(runLauncher={"namespace": "runs"})
    bed.kube.fail("patch", "Role", 404, 'namespaces "runs" not found')
    with pytest.raises(
        ApiError, match=re.escape("""spec.runLauncher.namespace 'runs': namespaces "runs" not""")
    ):
        bed.run()
    degraded = bed.condition("Degraded")
    assert degraded["reason"] == "ApplyFailed"
    assert "spec.runLauncher.namespace 'runs'" in degraded["message"]


# -- content of referenced ConfigMaps and Secrets rolls the pods that read it
REFERENCED = "phlo.dev/referenced-checksum"
DEPLOYMENTS = ("demo-webserver", "demo-daemon", "demo-code-server")


def _templates(bed: Bed) -> dict[str, dict[str, str]]:
    return {
        name: bed.kube.objects[("apps/v1", "Deployment", NS, name)]["spec"]["template"]["metadata"][
            "annotations"
        ]
        for name in DEPLOYMENTS
    }


def _configmap(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
    }


def test_editing_a_referenced_configmap_or_secret_rolls_the_dagster_pods() -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    bed = Bed(
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}}],
        storage={"postgres": {"secretName": "team-pg"}},
        dbt={"enabled": False},
    )
    bed.kube.add(_secret("api", token="t-1", unused="u-1"))
    bed.kube.add(_configmap("settings", LEVEL="info"))
    bed.kube.add(_secret("team-pg", **STORAGE))
    bed.ready()
    first = _templates(bed)
    assert len({a[REFERENCED] for a in first.values()}) == 1

    def rolled_after(change: dict[str, Any]) -> bool:
        before = _templates(bed)
        bed.kube.add(change)
        bed.run()
        after = _templates(bed)
        moved = {n for n in DEPLOYMENTS if after[n][REFERENCED] != before[n][REFERENCED]}
        assert moved in (set(), set(DEPLOYMENTS)), moved  # all three read the same env
        return bool(moved)

    assert rolled_after(_configmap("settings", LEVEL="debug"))
    assert rolled_after(_secret("api", token="t-2", unused="u-1"))
    assert not rolled_after(_secret("api", token="t-2", unused="u-2"))  # a key no env reads
    assert rolled_after(_secret("team-pg", **{**STORAGE, "password": "rotated-value"}))
    writes = bed.run().writes
    assert writes == 0  # unchanged content: nothing rolls again


def test_the_checksum_names_no_secret_value() -> None:
    bed = Bed(envFrom=[{"secretRef": {"name": "api"}}], dbt={"enabled": False})
    bed.kube.add(_secret("api", token="t-very-secret-1"))
    bed.ready()
    others = {ref: obj for ref, obj in bed.kube.objects.items() if ref != ("v1", "Secret", NS, "api")}
    text = repr([others, bed.kube.events])  # every child, the status, every Event
    for value in ("t-very-secret-1", base64.b64encode(b"t-very-secret-1").decode()):
        assert value not in text
    checksum = _templates(bed)["demo-webserver"][REFERENCED]
    assert re.fullmatch(r"[0-9a-f]{16}", checksum)


def test_nothing_referenced_means_no_checksum_and_the_generated_secret_is_left_out() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.ready()
    assert all(REFERENCED not in a for a in _templates(bed).values())


def test_a_source_only_one_component_reads_rolls_only_that_component() -> None:
    bed = Bed(webserver={"envFrom": [{"configMapRef": {"name": "ui"}}]}, dbt={"enabled": False})
    bed.kube.add(_configmap("ui", THEME="dark"))
    bed.ready()
    before = _templates(bed)
    assert REFERENCED in before["demo-webserver"]
    assert REFERENCED not in before["demo-daemon"] and REFERENCED not in before["demo-code-server"]
    bed.kube.add(_configmap("ui", THEME="light"))
    bed.run()
    after = _templates(bed)
    assert after["demo-webserver"][REFERENCED] != before["demo-webserver"][REFERENCED]
    assert (
        after["demo-daemon"] == before["demo-daemon"]
        and after["demo-code-server"] == before["demo-code-server"]
    )
