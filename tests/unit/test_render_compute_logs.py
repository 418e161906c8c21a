"""spec.computeLogs.s3: dagster.yaml's compute_logs is Dagster's S3ComputeLogManager (checked against the
exported schema of dagster-aws), credentials from a Secret as env on every Dagster container and run pod."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, config, render_all, shared

pytestmark = pytest.mark.unit
S3 = {
    "bucket": "dagster-logs",
    "prefix": "team/runs",
    "endpointUrl": "http://minio.storage:9000",
    "secretName": "s3",
}
CREDENTIALS = [
    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "access-key-id"}}},
    {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret-access-key"}},
    },
]


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def test_dagster_yaml_names_the_s3_compute_log_manager() -> None:
    w = wf(computeLogs={"s3": {**S3, "region": "eu-west-1"}})
    assert config.dagster_yaml(w)["compute_logs"] == {
        "module": "dagster_aws.s3.compute_log_manager",
        "class": "S3ComputeLogManager",
        "config": {
            "bucket": "dagster-logs",
            "prefix": "team/runs",
            "endpoint_url": "http://minio.storage:9000",
            "region": "eu-west-1",
        },
    }


def test_without_it_dagster_keeps_local_compute_logs() -> None:
    assert "compute_logs" not in config.dagster_yaml(wf())


def test_every_dagster_container_and_run_pod_reads_the_credentials_by_reference() -> None:
    w = wf(computeLogs={"s3": S3})
    desired = render_all(w)
    deployments = [o for o in desired.objects if o["kind"] == "Deployment"] + [desired.code_server]
    names = set()
    for dep in deployments:
        if dep["metadata"]["name"].endswith("postgres"):
            continue
        main = dep["spec"]["template"]["spec"]["containers"][0]
        names.add(main["name"])
        assert all(var in main["env"] for var in CREDENTIALS), main["name"]
    assert {"webserver", "daemon", "code-server"} <= names
    run_env = config.run_k8s_config(w)["container_config"]["env"]
    assert all(var in run_env for var in CREDENTIALS)
    assert not [v for v in shared(w).env if v["name"].startswith("AWS_") and "value" in v]


def test_without_a_secret_the_sdk_finds_credentials_itself() -> None:
    w = wf(computeLogs={"s3": {"bucket": "dagster-logs"}})
    assert config.dagster_yaml(w)["compute_logs"]["config"] == {"bucket": "dagster-logs", "prefix": "dagster"}
    assert not [v for v in shared(w).env if v["name"].startswith("AWS_")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"computeLogs": {"s3": {"bucket": "Bad_Bucket"}}}, r"spec\.computeLogs\.s3\.bucket"),
        (
            {"computeLogs": {"s3": {"bucket": "b" * 3, "endpointUrl": "minio:9000"}}},
            r"spec\.computeLogs\.s3\.endpointUrl",
        ),
        (
            {"computeLogs": {"s3": S3}, "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]},
            "spec.env: AWS_ACCESS_KEY_ID is set from computeLogs.s3.secretName",
        ),
    ],
)
def test_bad_settings_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        wf(**spec)


def test_an_unknown_s3_setting_through_instance_config_is_refused_by_the_schema() -> None:
    extra = {"compute_logs": {"config": {"bucket_name": "x"}}}
    with pytest.raises(InvalidSpec, match="bucket_name"):
        config.dagster_yaml(wf(computeLogs={"s3": S3}, instanceConfig=extra))


def test_a_missing_s3_secret_is_named_and_its_content_rolls_the_dagster_pods() -> None:
    from tests.unit.test_reconcile import NAME, NS, Bed

    bed = Bed(dbt={"enabled": False}, computeLogs={"s3": S3})
    bed.run()
    assert "spec.computeLogs.s3.secretName: Secret 's3' not found" in bed.condition("Degraded")["message"]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3", "namespace": NS},
        "data": {"access-key-id": "YQ==", "secret-access-key": "Yg=="},
    }
    bed.kube.add(secret)
    bed.run()

    def rolls(component: str) -> str:
        obj = bed.kube.get(("apps/v1", "Deployment", NS, f"{NAME}-{component}"))
        return obj["spec"]["template"]["metadata"]["annotations"].get("phlo.dev/referenced-checksum", "")

    before = {c: rolls(c) for c in ("webserver", "daemon", "code-server")}
    assert all(before.values())
    bed.kube.add({**secret, "data": {**secret["data"], "secret-access-key": "Yw=="}})
    bed.run()
    assert all(rolls(c) != before[c] for c in before)
