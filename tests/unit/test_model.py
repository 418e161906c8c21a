"""PhloWorkflowSpec: defaults and the messages a user sees for bad input."""

from __future__ import annotations

import pytest
from phlo_operator.model import InvalidSpec, PhloWorkflowSpec, parse_spec

pytestmark = pytest.mark.unit


def test_defaults_follow_the_contract() -> None:
    spec = parse_spec({"image": "img:1"})
    assert spec.workflows.path == "/app/workflows"
    assert spec.webserver.port == 3000 and spec.webserver.replicas == 1
    assert spec.code_server.port == 4000
    assert spec.storage.postgres.is_managed and spec.storage.postgres.deletion_policy == "Retain"
    assert spec.run_launcher.job_ttl_seconds == 3600
    assert spec.metrics.enabled and not spec.metrics.service_monitor.enabled
    assert not spec.suspend and not spec.dbt.enabled


def test_camel_case_fields_from_the_issue_contract_parse() -> None:
    spec = parse_spec(
        {
            "image": "img:1",
            "imagePullPolicy": "Always",
            "dbt": {"enabled": True, "projectDir": "/p", "profilesDir": "/q", "target": "prod"},
            "webserver": {"serviceType": "NodePort"},
            "codeServer": {"replicas": 2},
            "storage": {"postgres": {"secretName": "pg"}},
            "runLauncher": {"namespace": "runs", "jobTTLSeconds": 60},
            "envFrom": [{"secretRef": {"name": "s"}}],
            "nodeSelector": {"a": "b"},
            "serviceAccountName": "sa",
            "metrics": {"serviceMonitor": {"enabled": True}},
        }
    )
    assert spec.run_launcher.job_ttl_seconds == 60
    ok = parse_spec(
        {
            "image": "i",
            "webserver": {"podAnnotations": {"prometheus.io/scrape": "true", "team": "a"}},
            "nodeSelector": {"kubernetes.io/arch": "amd64", "empty": ""},
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "env": [
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}
            ],
        }
    )
    assert ok.tolerations[0].operator == "Exists"
    assert not spec.storage.postgres.is_managed
    assert spec.code_server.replicas == 2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "spec.image: Field required"),
        (
            {"image": "i", "env": [{"name": "DAGSTER_PG_PASSWORD", "value": "x"}]},
            "DAGSTER_PG_PASSWORD is set by the operator",
        ),
        (
            {"image": "i", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "A appears twice",
        ),
        (
            {"image": "i", "webserver": {"resources": {"limits": {"cpu": "lots"}}}},
            "'lots' is not a Kubernetes quantity",
        ),
        ({"image": "i", "storage": {"postgres": {"secretName": "s", "managed": True}}}, "not both"),
        ({"image": "i", "storage": {"postgres": {"managed": False}}}, "managed: false needs secretName"),
        ({"image": "i", "webserver": {"prot": 1}}, "spec.webserver.prot: Extra inputs are not permitted"),
        ({"image": "i", "codeServer": {"port": 0}}, "spec.codeServer.port"),
        (
            {
                "image": "i",
                "codeServer": {"resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "2"}}},
            },
            "requests.cpu (2) must not exceed limits.cpu (100m)",
        ),
        (
            {"image": "i", "webserver": {"resources": {"limits": {"BAD KEY": "1"}}}},
            "'BAD KEY' is not a resource name",
        ),
        (
            {"image": "i", "daemon": {"resources": {"requests": {"cpu": "-1"}}}},
            "'-1' is not a Kubernetes quantity",
        ),
        (
            {"image": "i", "webserver": {"port": 9090}},
            "metrics.port must differ from webserver.port",
        ),
        (
            {"image": "i", "webserver": {"podAnnotations": {"///": "x"}}},
            "spec.webserver.podAnnotations: '///' is not a valid annotation key",
        ),
        (
            {"image": "i", "nodeSelector": {"pool": "a b"}},
            "spec.nodeSelector: pool: 'a b' is not a valid label",
        ),
        (
            {"image": "i", "runCoordinator": {"maxConcurrentRuns": -2}},
            "spec.runCoordinator.maxConcurrentRuns: Input should be greater than or equal to -1",
        ),
        (
            {"image": "i", "runCoordinator": {"tagConcurrencyLimits": [{"key": "k", "limit": -1}]}},
            "spec.runCoordinator.tagConcurrencyLimits.0.limit",
        ),
        (
            {
                "image": "i",
                "runCoordinator": {
                    "tagConcurrencyLimits": [
                        {"key": "k", "value": "v", "applyLimitPerUniqueValue": True, "limit": 1}
                    ]
                },
            },
            "set value or applyLimitPerUniqueValue, not both",
        ),
        ({"image": "i", "runRetries": {"maxRetries": -1}}, "spec.runRetries.maxRetries"),
        ({"image": "i", "retention": {"sensor": {"skiped": 1}}}, "spec.retention.sensor.skiped"),
        ({"image": "i", "retention": {"schedule": {"success": -2}}}, "spec.retention.schedule.success"),
        (
            {"image": "i", "concurrency": {"pools": {"defaultLimit": 1001}}},
            "spec.concurrency.pools.defaultLimit: Input should be less than or equal to 1000",
        ),
        (
            {"image": "i", "concurrency": {"pools": {"granularity": "step"}}},
            "spec.concurrency.pools.granularity",
        ),
        ({"image": "i", "instanceConfig": [1]}, "spec.instanceConfig"),
        ({"image": "i", "env": [{"name": "X", "valueFrom": {}}]}, "set exactly one of secretKeyRef"),
        # keys the API server refuses in a pod template (found by tests/integration/test_render_dry_run.py)
        (
            {"image": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "."}}}]},
            "spec.env.0.valueFrom.secretKeyRef.key",
        ),
        (
            {
                "image": "i",
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "..0"}}}],
            },
            "spec.env.0.valueFrom.configMapKeyRef.key",
        ),
        ({"image": "i", "tolerations": [{"operator": "Sometimes"}]}, "spec.tolerations.0.operator"),
        ({"image": "i", "envFrom": [{"secretRef": {"nam": "x"}}]}, "spec.envFrom.0.secretRef.nam"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict, expected: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(spec)
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


def test_model_is_immutable() -> None:
    spec = PhloWorkflowSpec.model_validate({"image": "i"})
    with pytest.raises(Exception, match="frozen"):
        spec.image = "other"  # type: ignore[misc]


def test_requests_may_equal_limits_in_other_units() -> None:
    res = {
        "limits": {"memory": "1Gi", "cpu": 1, "nvidia.com/gpu": "1"},
        "requests": {"memory": "1024Mi", "cpu": "1000m"},
    }
    assert parse_spec({"image": "i", "codeServer": {"resources": res}}).code_server.resources is not None
