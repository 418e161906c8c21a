"""The chart rendered by the real helm binary: lint, values validation, RBAC, security, CRD, monitoring."""

from __future__ import annotations

import json
import shutil

import promql_parser
import pytest
import yaml
from phlo_operator import controller, main, rbac

from tests.helm_chart import ALL_FEATURES, CHART, REPO, by_kind, helm, is_hook, one, template, values_file

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm

CONTRACT_ALERTS = {
    "PhloOperatorDown": "up{",
    "PhloWorkflowDegraded": 'phlo_operator_workflows{condition="Degraded", status="True"}',
    "DagsterWebserverDown": 'up{job=~".+-webserver"}',
    "DagsterDaemonDown": "dagster_daemon_heartbeat_age_seconds",
    "DagsterRunFailed": 'dagster_runs_finished_total{status="FAILURE"}',
    "DagsterRunQueueStuck": "dagster_runs_queued_oldest_age_seconds",
    "DagsterAssetStale": 'dagster_asset_freshness_state{state="fail"}',
    "DagsterBlockingCheckFailed": 'blocking="true"',
    "DagsterCodeLocationError": "dagster_code_location_load_errors",
}


def _rules(role: dict) -> list[dict]:
    return [{k: r[k] for k in ("apiGroups", "resources", "verbs")} for r in role["rules"]]


@pytest.mark.parametrize(
    "values",
    [{}, ALL_FEATURES, {"watch": {"allNamespaces": True}}, {"watch": {"namespaces": ["a", "b"]}}],
    ids=["defaults", "all-features", "cluster-wide", "two-namespaces"],
)
def test_helm_lint_strict(tmp_path, values):
    args = ["lint", "--strict", str(CHART), "--namespace", "phlo"]
    if values:
        args += ["-f", str(values_file(tmp_path, values))]
    result = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"watchh": {"namespaces": ["a"]}}, "watchh"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"watch": {"namespaces": ["Team_A"]}}, "Team_A"),
    ],
)
def test_unknown_or_invalid_values_fail_with_the_key_named(tmp_path, values, named):
    result = helm("template", "x", str(CHART), "-f", str(values_file(tmp_path, values)), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr
    assert "goroutine" not in result.stderr


def test_chart_works_as_a_dependency_of_an_umbrella_chart(tmp_path):
    umbrella = tmp_path / "umbrella"
    (umbrella / "charts").mkdir(parents=True)
    (umbrella / "Chart.yaml").write_text(
        "apiVersion: v2\nname: platform\nversion: 1.0.0\n"
        "dependencies:\n  - name: phlo-dagster\n    version: 0.4.0\n"
    )
    (umbrella / "values.yaml").write_text("global:\n  team: data\nphlo-dagster:\n  replicaCount: 2\n")
    shutil.copytree(CHART, umbrella / "charts" / "phlo-dagster")
    helm("lint", "--strict", str(umbrella))
    rendered = [d for d in yaml.safe_load_all(helm("template", "p", str(umbrella)).stdout) if d]
    assert one(rendered, "Deployment")["spec"]["replicas"] == 2


def test_existing_service_account_needs_a_name(tmp_path):
    values = values_file(tmp_path, {"serviceAccount": {"create": False}})
    result = helm("template", "x", str(CHART), "-f", str(values), check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr
    named = template(tmp_path, {"serviceAccount": {"create": False, "name": "ops-sa"}})
    assert by_kind(named, "ServiceAccount") == []
    assert one(named, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert one(named, "RoleBinding")["subjects"][0]["name"] == "ops-sa"


def test_default_render_is_namespaced_and_least_privilege(tmp_path):
    objects = template(tmp_path, namespace="phlo")
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "Job",
            "KopfPeering",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        }
    )
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "phlo"
    assert _rules(role) == json.loads(json.dumps(rbac.RULES))
    cluster_role = one(objects, "ClusterRole")
    assert _rules(cluster_role) == json.loads(json.dumps(rbac.CLUSTER_RULES))
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])
    binding = one(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "phlo-dagster", "namespace": "phlo"}]
    peering = one(objects, "KopfPeering")["metadata"]
    assert (peering["name"], peering["namespace"]) == (controller.PEERING_NAME, "phlo")


def test_deployment_passes_restricted_pod_security_and_probes_health(tmp_path):
    deployment = one(template(tmp_path), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["phlo-dagster-operator"]
    assert container["args"] == [
        "--namespace=phlo",
        "--metrics-port=8080",
        "--health-port=8081",
        "--log-level=INFO",
        "--peering-object=wait",
    ]
    assert container["image"] == "phlo-dagster-operator:0.4.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "health"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_watched_namespaces_get_one_role_each_and_flags(tmp_path):
    objects = template(tmp_path, {"watch": {"namespaces": ["team-a", "team-b"]}}, namespace="ops")
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")) == ["team-a", "team-b"]
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "RoleBinding")) == ["team-a", "team-b"]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objects, "KopfPeering")) == ["team-a", "team-b"]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_run_namespaces_get_the_role_but_are_not_watched(tmp_path):
    objects = template(tmp_path, {"rbac": {"runNamespaces": ["runs", "phlo"]}}, namespace="phlo")
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")) == ["phlo", "runs"]
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "RoleBinding")) == ["phlo", "runs"]
    assert [p["metadata"]["namespace"] for p in by_kind(objects, "KopfPeering")] == ["phlo"]
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=phlo"]


def test_cluster_wide_mode_uses_one_cluster_role(tmp_path):
    objects = template(tmp_path, {"watch": {"allNamespaces": True}})
    assert by_kind(objects, "Role") == [] and by_kind(objects, "RoleBinding") == []
    role = one(objects, "ClusterRole")
    assert _rules(role) == json.loads(json.dumps(rbac.RULES + rbac.CLUSTER_RULES))
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == role["metadata"]["name"]
    assert one(objects, "ClusterKopfPeering")["metadata"]["name"] == controller.PEERING_NAME
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)


def test_crd_template_is_the_generated_crd_with_keep_policy(tmp_path):
    crds = {o["metadata"]["name"]: o for o in by_kind(template(tmp_path), "CustomResourceDefinition")}
    assert set(crds) == {"phloworkflows.phlo.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    rendered = crds["phloworkflows.phlo.dev"]
    source = yaml.safe_load((REPO / "crds" / "phlo.dev_phloworkflows.yaml").read_text())
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["name"] == source["metadata"]["name"]
    without = by_kind(template(tmp_path, {"crd": {"install": False}}), "CustomResourceDefinition")
    assert {o["metadata"]["name"] for o in without} == set(crds) - {"phloworkflows.phlo.dev"}


def test_monitoring_objects(tmp_path):
    objects = template(tmp_path, ALL_FEATURES, namespace="phlo")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"

    rule = one(objects, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == set(CONTRACT_ALERTS)
    for name, needle in CONTRACT_ALERTS.items():
        assert needle in alerts[name]["expr"], name
        promql_parser.parse(alerts[name]["expr"])  # raises ValueError on a syntax error
        assert alerts[name]["labels"]["severity"] and alerts[name]["annotations"]["summary"]
    assert 'job="phlo-dagster-metrics"' in alerts["PhloOperatorDown"]["expr"]
    assert "> 300" in alerts["DagsterDaemonDown"]["expr"]
    assert all(rule["annotations"]["runbook"] for rule in alerts.values())
    assert "{{ $labels.namespace }}" in alerts["PhloWorkflowDegraded"]["annotations"]["description"]

    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["phlo-dagster.json"])
    assert board == json.loads((CHART / "files" / "dashboards" / "phlo-dagster.json").read_text())


def test_hooks_example_workflow_and_helm_test(tmp_path):
    objects = template(tmp_path, ALL_FEATURES, namespace="phlo")
    workflow = one(objects, "PhloWorkflow")
    assert is_hook(workflow) and workflow["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert workflow["spec"]["image"]
    test_job = one(objects, "Job")
    assert test_job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = test_job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "http://phlo-dagster-metrics.phlo.svc:8080/metrics" in command[-1]
    non_hooks = [o for o in objects if not is_hook(o)]
    assert all(o["kind"] != "PhloWorkflow" for o in non_hooks)


def test_log_level_and_peering_flags(tmp_path):
    objects = template(tmp_path, {"logLevel": "debug", "peering": {"enabled": False}})
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=DEBUG" in args and "--standalone" in args


def test_packaged_chart_renders_the_same(tmp_path):
    packaged = helm("package", str(CHART), "--destination", str(tmp_path)).stdout
    archive = tmp_path / "phlo-dagster-0.4.0.tgz"
    assert archive.exists(), packaged
    direct = helm("template", "r", str(CHART), "-n", "phlo", "--include-crds").stdout
    from_archive = helm("template", "r", str(archive), "-n", "phlo", "--include-crds").stdout
    assert from_archive == direct


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watch": {"namespaces": ["a", "b"]}, "logLevel": "warning"},
        {"watch": {"allNamespaces": True}, "peering": {"enabled": False}, "metrics": {"port": 9000}},
    ],
    ids=["defaults", "two-namespaces", "cluster-wide-standalone"],
)
def test_rendered_args_are_accepted_by_the_operator_cli(tmp_path, values):
    container = one(template(tmp_path, values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["phlo-dagster-operator"]
    args = main.parse_args(container["args"])
    assert args.all_namespaces is bool(values.get("watch", {}).get("allNamespaces"))
    if not args.all_namespaces:
        assert args.namespace == (values.get("watch", {}).get("namespaces") or ["phlo"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (args.metrics_port, args.health_port) == (ports["metrics"], ports["health"])
    assert args.standalone is not values.get("peering", {}).get("enabled", True)
    assert args.log_level == values.get("logLevel", "info").upper()
