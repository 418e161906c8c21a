"""The chart on the test bed's real API server: dry run, install, test, upgrade, uninstall, RBAC bounds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator import controller, rbac

from tests.helm_chart import ALL_FEATURES, CHART, RELEASE, REPO, template, values_file
from tests.operator_process import free_port, monitoring_crd
from tests.testbed.cluster import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm

PHLO_CRD = "phloworkflows.phlo.dev"
FIELD_MANAGER = "phlo-chart-tests"


def _apply(testbed: Testbed, docs: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
    return testbed.kubectl(
        "apply",
        "--server-side",
        f"--field-manager={FIELD_MANAGER}",
        "--force-conflicts",
        *extra,
        "-f",
        "-",
        input="\n---\n".join(yaml.safe_dump(d) for d in docs),
        timeout=120,
    )


@pytest.fixture(scope="module")
def crds(testbed: Testbed) -> None:
    """Every CRD the chart's objects need, established: monitoring stand-ins, kopf peering, PhloWorkflow."""
    docs = [
        monitoring_crd("ServiceMonitor", "servicemonitors"),
        monitoring_crd("PrometheusRule", "prometheusrules"),
    ]
    docs += [d for d in yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()) if d]
    if testbed.kubectl("get", "crd", PHLO_CRD, check=False).returncode != 0:
        # the chart's copy, equal to crds/ (a unit test checks)
        docs.append(yaml.safe_load((CHART / "files" / "crds" / "phlo.dev_phloworkflows.yaml").read_text()))
    _apply(testbed, docs)
    names = [d["metadata"]["name"] for d in docs]
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])


@pytest.fixture
def other_namespace(testbed: Testbed, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-other"
    testbed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _adopt_crd(testbed: Testbed, namespace: str) -> None:
    """Lets this release take over a CRD applied earlier with kubectl (the README's adoption recipe)."""
    if testbed.kubectl("get", "crd", PHLO_CRD, check=False).returncode != 0:
        return
    testbed.kubectl("label", "--overwrite", "crd", PHLO_CRD, "app.kubernetes.io/managed-by=Helm")
    testbed.kubectl(
        "annotate",
        "--overwrite",
        "crd",
        PHLO_CRD,
        f"meta.helm.sh/release-name={RELEASE}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


def _install(
    testbed: Testbed, namespace: str, *settings: str, crd: bool = False
) -> subprocess.CompletedProcess[str]:
    """`helm install` of the chart, awaiting rollout; the CRD stays with the `crds` fixture unless `crd`."""
    sets = ([] if crd else ["crd.install=false"]) + list(settings)
    return testbed.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        *[arg for value in sets for arg in ("--set", value)],
        "--wait",
        "--timeout",
        "180s",
        timeout=240,
    )


def _get(testbed: Testbed, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(testbed.kubectl("get", *args, "-o", "json").stdout)
    return result


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def _can(testbed: Testbed, kubeconfig: Path, *args: str) -> bool:
    """`kubectl auth can-i` as the token's own identity (a SelfSubjectAccessReview)."""
    result = subprocess.run(
        [str(testbed.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), "auth", "can-i", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() in {"yes", "no"}, result.stderr
    return result.stdout.strip() == "yes"


def _rules_in(testbed: Testbed, kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """The token's own SelfSubjectRulesReview: every resource rule that applies in `namespace`."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    result = subprocess.run(
        [str(testbed.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", "create", "-f", "-", "-o", "json"],
        input=json.dumps(review),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rules: list[dict[str, Any]] = json.loads(result.stdout)["status"]["resourceRules"]
    return rules


@pytest.mark.parametrize(
    "values",
    [ALL_FEATURES, {**ALL_FEATURES, "watch": {"allNamespaces": True}}],
    ids=["namespaced", "cluster-wide"],
)
def test_every_rendered_object_passes_server_side_dry_run(testbed, namespace, crds, tmp_path, values):
    objects = template(tmp_path, values, namespace=namespace)
    assert {"Deployment", "PrometheusRule", "ServiceMonitor", "PhloWorkflow", "CustomResourceDefinition"} <= {
        o["kind"] for o in objects
    }
    result = _apply(testbed, objects, "--dry-run=server")
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects), result.stdout + result.stderr


def test_install_test_upgrade_uninstall(testbed, namespace, crds, tmp_path):
    # Pods that break Pod Security "restricted" would never be created here, so Available proves compliance.
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    _adopt_crd(testbed, namespace)
    installed = _install(testbed, namespace, crd=True)
    assert f"kubectl -n {namespace} rollout status deployment/{RELEASE}" in installed.stdout  # NOTES.txt
    deployment = _get(testbed, "deployment", RELEASE, "-n", namespace)
    assert _condition(deployment, "Available") == "True"
    crd = _get(testbed, "crd", PHLO_CRD)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == namespace
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    peering = _get(testbed, "kopfpeering", controller.PEERING_NAME, "-n", namespace)
    assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE

    tested = testbed.helm("test", RELEASE, "-n", namespace, "--timeout", "120s", timeout=180)
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout

    upgrade = values_file(tmp_path, {"replicaCount": 2, "logLevel": "debug"})
    testbed.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "-f",
        str(upgrade),
        "--wait",
        "--timeout",
        "180s",
        timeout=240,
    )
    deployment = _get(testbed, "deployment", RELEASE, "-n", namespace)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"].get("readyReplicas") == 2
    assert "--log-level=DEBUG" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    history = json.loads(testbed.helm("history", RELEASE, "-n", namespace, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"

    # A new chart version with a changed CRD: `helm upgrade` alone brings the cluster's CRD up to date.
    newer = tmp_path / "chart"
    shutil.copytree(CHART, newer)
    crd_copy = newer / "files" / "crds" / "phlo.dev_phloworkflows.yaml"
    changed = yaml.safe_load(crd_copy.read_text())
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = f"upgraded {namespace}"
    crd_copy.write_text(yaml.safe_dump(changed, sort_keys=False))
    testbed.helm("upgrade", RELEASE, str(newer), "-n", namespace, "--reuse-values", "--wait", timeout=240)
    live = _get(testbed, "crd", PHLO_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert live["description"] == f"upgraded {namespace}"
    testbed.helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", "--wait", timeout=240)

    testbed.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s", timeout=180)
    selector = f"app.kubernetes.io/instance={RELEASE}"
    kinds = "deployments,replicasets,services,serviceaccounts,roles,rolebindings,configmaps,kopfpeerings,jobs"
    left = _get(testbed, kinds, "-n", namespace, "-l", selector)["items"]
    assert left == [], [f"{o['kind']}/{o['metadata']['name']}" for o in left]
    cluster_left = [
        o
        for o in _get(testbed, "clusterroles,clusterrolebindings", "-l", selector)["items"]
        if o["metadata"]["name"].startswith(namespace)
    ]
    assert cluster_left == []
    # Retained by policy (documented): the CRD, so no PhloWorkflow anywhere disappears with the release.
    assert _get(testbed, "crd", PHLO_CRD)["metadata"]["name"] == PHLO_CRD


def test_namespaced_rbac_is_no_broader_than_documented(testbed, namespace, other_namespace, crds):
    _install(testbed, namespace)
    kubeconfig = testbed.kubeconfig_for_token(testbed.token(namespace, RELEASE))
    ns, other = f"--namespace={namespace}", f"--namespace={other_namespace}"
    allowed = [
        ("watch", "phloworkflows.phlo.dev", ns),
        ("patch", "phloworkflows.phlo.dev", "--subresource=status", ns),
        ("create", "deployments.apps", ns),
        ("create", "jobs.batch", ns),
        ("get", "secrets", ns),
        ("create", "events", ns),
        ("patch", "kopfpeerings.kopf.dev", ns),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    denied = [
        ("get", "secrets", other),
        ("list", "secrets", "--all-namespaces"),
        ("create", "deployments.apps", other),
        ("list", "phloworkflows.phlo.dev", other),
        ("list", "phloworkflows.phlo.dev", "--all-namespaces"),
        ("create", "pods", ns),
        ("create", "pods", "--subresource=exec", ns),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", "nodes"),
        ("delete", "namespaces"),
        ("impersonate", "serviceaccounts", ns),
        ("update", "persistentvolumeclaims", ns),
    ]
    assert [a for a in allowed if not _can(testbed, kubeconfig, *a)] == []
    assert [d for d in denied if _can(testbed, kubeconfig, *d)] == []

    # Exhaustively: elsewhere the token holds only the cluster-scoped rules; in its namespace, the Role's too.
    def granted(where: str) -> set[tuple[str, str, str]]:
        self_service = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
        return {
            (g, r, v)
            for rule in _rules_in(testbed, kubeconfig, where)
            for g in rule.get("apiGroups", [])
            for r in rule.get("resources", [])
            for v in rule.get("verbs", [])
            if r not in self_service
        }

    def declared(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {
            (g, r, v)
            for rule in rules
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    assert granted(other_namespace) == declared(rbac.CLUSTER_RULES)
    assert granted(namespace) == declared(rbac.RULES + rbac.CLUSTER_RULES)
    testbed.helm("uninstall", RELEASE, "-n", namespace, "--wait", timeout=180)


def test_cluster_wide_rbac_reaches_every_namespace_but_not_the_cluster(
    testbed, namespace, other_namespace, crds
):
    _install(testbed, namespace, "watch.allNamespaces=true", "peering.enabled=false")
    try:
        kubeconfig = testbed.kubeconfig_for_token(testbed.token(namespace, RELEASE))
        other = f"--namespace={other_namespace}"
        assert _can(testbed, kubeconfig, "create", "deployments.apps", other)
        assert _can(testbed, kubeconfig, "list", "phloworkflows.phlo.dev", "--all-namespaces")
        # documented: the managed PostgreSQL password needs Secrets wherever workflows live
        assert _can(testbed, kubeconfig, "get", "secrets", other)
        for denied in [
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
            ("get", "nodes"),
            ("create", "pods", other),
            ("create", "pods", "--subresource=exec", other),
            ("delete", "namespaces"),
        ]:
            assert not _can(testbed, kubeconfig, *denied), denied
    finally:
        testbed.helm("uninstall", RELEASE, "-n", namespace, "--wait", timeout=180)


def test_operator_with_the_chart_service_account_reconciles_quickstart(testbed, namespace, crds, tmp_path):
    """Proof the chart's RBAC suffices: the real operator, with only the chart's token, reaches Ready."""
    _install(testbed, namespace)
    # The bed has no volume provisioner: a PersistentVolume pre-bound to the managed PostgreSQL claim.
    volume = f"pv-{namespace}"
    _apply(
        testbed,
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": f"/tmp/{volume}"},
                    "claimRef": {"namespace": namespace, "name": "data-quickstart-postgres-0"},
                },
            }
        ],
    )
    kubeconfig = testbed.kubeconfig_for_token(testbed.token(namespace, RELEASE))
    metrics_port, health_port = free_port(), free_port()
    log = tmp_path / "operator.log"
    env = {k: v for k, v in testbed.env().items() if k != "KUBECONFIG"} | {"KUBECONFIG": str(kubeconfig)}
    with log.open("w") as out:
        operator = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "phlo-dagster-operator"),
                f"--namespace={namespace}",
                f"--metrics-port={metrics_port}",
                f"--health-port={health_port}",
                "--bind-address=127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        testbed.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/quickstart/workflow.yaml"))
        waited = testbed.kubectl(
            "wait",
            "-n",
            namespace,
            "--for=condition=Ready",
            "pwf/quickstart",
            "--timeout=180s",
            check=False,
            timeout=210,
        )
        status = testbed.kubectl(
            "get", "pwf/quickstart", "-n", namespace, "-o", "jsonpath={.status}", check=False
        )
        assert waited.returncode == 0, f"{waited.stderr}\nstatus: {status.stdout}\n{log.read_text()[-3000:]}"
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        )
        forbidden = [
            line
            for line in metrics.splitlines()
            if line.startswith("phlo_operator_api_errors_total")
            and 'code="403"' in line
            and not line.rstrip().endswith(" 0.0")
        ]
        assert forbidden == [], forbidden
        assert "Forbidden" not in log.read_text()
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=10)
        testbed.kubectl("delete", "pwf", "--all", "-n", namespace, "--wait=false", check=False)
        testbed.helm("uninstall", RELEASE, "-n", namespace, check=False, timeout=180)
        testbed.kubectl("delete", "pv", volume, "--wait=false", "--ignore-not-found", check=False)


def test_example_workflow_hook_is_created_and_outlives_uninstall(testbed, namespace, crds):
    _install(testbed, namespace, "exampleWorkflow.enabled=true", "exampleWorkflow.name=example")
    workflow = _get(testbed, "pwf", "example", "-n", namespace)
    assert workflow["spec"]["image"] == "phlo-dagster:0.4.0"
    assert workflow["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    testbed.helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", "--wait", timeout=240)
    # an upgrade leaves the workflow alone (re-creating it would restart every Dagster component)
    assert _get(testbed, "pwf", "example", "-n", namespace)["metadata"]["uid"] == workflow["metadata"]["uid"]
    testbed.helm("uninstall", RELEASE, "-n", namespace, "--wait", timeout=180)
    # documented: a hook resource is not part of the release, so it stays until deleted with kubectl
    assert _get(testbed, "pwf", "example", "-n", namespace)["metadata"]["name"] == "example"
    testbed.kubectl("delete", "pwf", "example", "-n", namespace)


def test_run_namespace_gets_the_role_and_loses_it_on_uninstall(testbed, namespace, other_namespace, crds):
    _install(testbed, namespace, f"rbac.runNamespaces={{{other_namespace}}}")
    kubeconfig = testbed.kubeconfig_for_token(testbed.token(namespace, RELEASE))
    other = f"--namespace={other_namespace}"
    assert _can(testbed, kubeconfig, "create", "rolebindings.rbac.authorization.k8s.io", other)
    assert _can(testbed, kubeconfig, "create", "configmaps", other)
    testbed.helm("uninstall", RELEASE, "-n", namespace, "--wait", timeout=180)
    assert (
        _get(testbed, "roles", "-n", other_namespace, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        == []
    )
