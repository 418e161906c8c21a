"""Private registries and workload identity: imagePullSecrets on every pod, annotations on the generated
ServiceAccount, and PostgreSQL under a ServiceAccount of its own."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, access, config, postgres, render_all, shared

pytestmark = pytest.mark.unit

PULL = [{"name": "registry-a"}, {"name": "registry-b"}]


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def pods_of(w: Workflow) -> dict[str, dict[str, Any]]:
    """Every pod template the operator writes, by kind/name."""
    d = render_all(w)
    objs = d.all_objects()
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def launcher_config(w: Workflow) -> dict[str, Any]:
    doc = yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])
    return dict(doc["run_launcher"]["config"])


def test_every_pod_gets_the_pull_secrets_in_order() -> None:
    pods = pods_of(wf(imagePullSecrets=PULL, dbt={"enabled": True}))
    assert sorted(pods) == [
        "Deployment/demo-code-server",
        "Deployment/demo-daemon",
        "Deployment/demo-webserver",
        "Job/demo-dbt-" + next(k for k in pods if k.startswith("Job/")).split("-")[-1],
        "StatefulSet/demo-postgres",
    ]
    for name, pod in pods.items():
        assert pod["imagePullSecrets"] == PULL, name


def test_run_pods_get_the_pull_secrets_through_the_launcher() -> None:
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    cfg = launcher_config(wf(imagePullSecrets=PULL))
    assert cfg["image_pull_secrets"] == PULL
    # Only the launcher's field: dagster-k8s concatenates it with pod_spec_config's, so one place, no repeat.
    assert "imagePullSecrets" not in cfg["run_k8s_config"]["pod_spec_config"]
    result = process_config(K8sRunLauncher.config_type(), cfg)
    assert result.success, result.errors


def test_without_pull_secrets_nothing_changes() -> None:
    w = wf(dbt={"enabled": True})
    for name, pod in pods_of(w).items():
        assert "imagePullSecrets" not in pod, name
    assert "image_pull_secrets" not in launcher_config(w)


def test_pull_secret_names_are_checked() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.imagePullSecrets.*appears twice"):
        parse_spec({"image": "i", "imagePullSecrets": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(InvalidSpec, match=r"spec\.imagePullSecrets\.0\.name"):
        parse_spec({"image": "i", "imagePullSecrets": [{"name": "Not_A_Name"}]})


def test_managed_postgres_runs_under_its_own_tokenless_account() -> None:
    w = wf()
    pod = pods_of(w)["StatefulSet/demo-postgres"]
    assert pod["serviceAccountName"] == "demo-postgres"
    assert pod["automountServiceAccountToken"] is False
    account = postgres.service_account(w)
    assert account["metadata"]["name"] == "demo-postgres"
    assert account["automountServiceAccountToken"] is False
    assert account in render_all(w).objects
    # Bound to nothing: the run-launcher RoleBinding names the Dagster account only.
    binding = access.role_binding(w)
    assert [s["name"] for s in binding["subjects"]] == ["demo-dagster"]


def test_external_postgres_removes_its_account() -> None:
    d = render_all(wf(storage={"postgres": {"secretName": "pg"}}))
    assert ("v1", "ServiceAccount", "team", "demo-postgres") in d.absent
    assert not [
        o for o in d.objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "demo-postgres"
    ]


def test_generated_service_account_carries_annotations() -> None:
    identity = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/dagster"}
    account = access.service_account(wf(serviceAccount={"annotations": identity}))
    assert account is not None and account["metadata"]["annotations"] == identity
    plain = access.service_account(wf())
    assert plain is not None and "annotations" not in plain["metadata"]


def test_service_account_annotations_need_the_generated_account() -> None:
    with pytest.raises(InvalidSpec, match=r"serviceAccountName, annotate that ServiceAccount instead"):
        parse_spec(
            {"image": "i", "serviceAccountName": "mine", "serviceAccount": {"annotations": {"a": "b"}}}
        )
    with pytest.raises(InvalidSpec, match=r"spec\.serviceAccount\.annotations: 'bad key!'"):
        parse_spec({"image": "i", "serviceAccount": {"annotations": {"bad key!": "x"}}})
    # The existing field alone keeps working.
    assert access.service_account(wf(serviceAccountName="mine")) is None
