"""Proofs that the test bed is a real control plane: controllers, scheduling, schema, CEL, RBAC, PSA."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.testbed.cluster import FAKE_NODE_ANNOTATION, Testbed, TestbedCommandError
from tests.testbed.postgres import Postgres

pytestmark = pytest.mark.integration


def _apply(testbed: Testbed, namespace: str, manifest: dict[str, Any]) -> None:
    testbed.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def _get(testbed: Testbed, *args: str) -> Any:
    return json.loads(testbed.kubectl("get", *args, "-o", "json").stdout)


def _container(name: str = "app") -> dict[str, Any]:
    return {"name": name, "image": "registry.invalid/app:1", "command": ["app"]}


def test_kubectl_and_server_report_v1_36(testbed: Testbed) -> None:
    versions = json.loads(testbed.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"].startswith("v1.36.")
    assert versions["serverVersion"]["gitVersion"].startswith("v1.36.")
    assert versions["serverVersion"]["minor"] == "36"


def test_deployment_pods_become_ready_on_kwok_nodes(testbed: Testbed, namespace: str) -> None:
    labels = {"app": "web"}
    _apply(
        testbed,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
            },
        },
    )
    testbed.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s", timeout=100)
    deployment = _get(testbed, "deployment", "web", "-n", namespace)
    assert deployment["status"]["readyReplicas"] == 3
    fake_nodes = {
        n["metadata"]["name"]
        for n in _get(testbed, "nodes")["items"]
        if n["metadata"].get("annotations", {}).get(FAKE_NODE_ANNOTATION) == "fake"
    }
    assert len(fake_nodes) >= 2
    pods = _get(testbed, "pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"] in fake_nodes  # placed by the real scheduler
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"
        # The ReplicaSet controller created it: ownership chain Deployment -> ReplicaSet -> Pod.
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"


def _job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [_container()]},
            },
        },
    }


def test_job_completes(testbed: Testbed, namespace: str) -> None:
    _apply(testbed, namespace, _job("ok"))
    testbed.kubectl(
        "wait", "--for=condition=Complete", "job/ok", "-n", namespace, "--timeout=90s", timeout=100
    )
    job = _get(testbed, "job", "ok", "-n", namespace)
    assert job["status"]["succeeded"] == 1
    (pod,) = _get(testbed, "pods", "-n", namespace, "-l", "job-name=ok")["items"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_fail_annotation_makes_the_job_pod_fail(testbed: Testbed, namespace: str) -> None:
    _apply(testbed, namespace, _job("doomed", {"kwok.phlo.dev/fail": "true"}))
    testbed.kubectl(
        "wait", "--for=condition=Failed", "job/doomed", "-n", namespace, "--timeout=90s", timeout=100
    )
    (pod,) = _get(testbed, "pods", "-n", namespace, "-l", "job-name=doomed")["items"]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert _get(testbed, "job", "doomed", "-n", namespace)["status"].get("succeeded", 0) == 0


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {"rule": "self.min <= self.max", "message": "min must not exceed max"}
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_crd_schema_and_cel_rules_are_enforced_by_the_server(testbed: Testbed, namespace: str) -> None:
    group = f"t{secrets.token_hex(4)}.testbed.phlo.dev"
    testbed.kubectl("apply", "-f", "-", input=json.dumps(_crd(group)))
    try:
        testbed.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")

        def widget(name: str, spec: dict[str, Any]) -> str:
            obj = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
            return json.dumps(obj)

        ok = widget("good", {"size": 2, "min": 1, "max": 3})
        # Discovery of a brand-new group can lag a moment behind Established.
        for _ in range(20):
            if testbed.kubectl("create", "-n", namespace, "-f", "-", input=ok, check=False).returncode == 0:
                break
            time.sleep(0.5)
        assert (
            testbed.kubectl("get", f"widgets.{group}", "good", "-n", namespace, check=False).returncode == 0
        )

        cel = testbed.kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            input=widget("inverted", {"size": 2, "min": 5, "max": 1}),
            check=False,
        )
        assert cel.returncode != 0
        assert "min must not exceed max" in cel.stderr
        assert "is invalid" in cel.stderr

        schema = testbed.kubectl(
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            input=widget("tiny", {"size": 0, "min": 1, "max": 1}),
            check=False,
        )
        assert schema.returncode != 0
        assert "spec.size" in schema.stderr
        assert "should be greater than or equal to 1" in schema.stderr
    finally:
        testbed.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def _http_status(testbed: Testbed, path: str, token: str) -> int:
    request = urllib.request.Request(f"{testbed.server}{path}", headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(testbed.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_rbac_refuses_a_service_account_without_a_role(testbed: Testbed, namespace: str) -> None:
    testbed.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = testbed.token(namespace, "nobody")
    pods = f"/api/v1/namespaces/{namespace}/pods"

    assert _http_status(testbed, pods, token) == 403
    assert _http_status(testbed, pods, "not-a-token") == 401  # authentication is real, too
    denied = testbed.kubectl(
        "--kubeconfig", str(testbed.kubeconfig_for_token(token)), "get", "pods", "-n", namespace, check=False
    )
    assert denied.returncode != 0
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot list resource "pods"' in denied.stderr

    # The same token is allowed once a Role grants it: RBAC, not something else, made the decision.
    testbed.kubectl("create", "role", "read-pods", "--verb=list", "--resource=pods", "-n", namespace)
    testbed.kubectl(
        "create",
        "rolebinding",
        "read-pods",
        "--role=read-pods",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )
    deadline = time.monotonic() + 30
    while _http_status(testbed, pods, token) != 200:
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.5)
    assert _http_status(testbed, f"/api/v1/namespaces/{namespace}/secrets", token) == 403


def _pod(name: str, security: dict[str, Any], pod_security: dict[str, Any] | None = None) -> dict[str, Any]:
    container = {**_container(), "securityContext": security}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], "securityContext": pod_security or {}},
    }


def test_restricted_namespace_refuses_a_privileged_pod(testbed: Testbed, namespace: str) -> None:
    testbed.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    with pytest.raises(TestbedCommandError) as refused:
        _apply(testbed, namespace, _pod("privileged", {"privileged": True}))
    assert 'violates PodSecurity "restricted:latest"' in refused.value.stderr
    assert "privileged" in refused.value.stderr

    compliant = _pod(
        "compliant",
        {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
        },
        {"seccompProfile": {"type": "RuntimeDefault"}},
    )
    _apply(testbed, namespace, compliant)  # the same namespace admits a pod that meets the profile
    testbed.kubectl("wait", "--for=condition=Ready", "pod/compliant", "-n", namespace, "--timeout=60s")


def _listening_sockets_of(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket owned by pids, read from /proc."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink()
            except OSError:
                continue
            if str(target).startswith("socket:["):
                inodes.add(str(target)[8:-1])
    found: list[tuple[str, int]] = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            address_hex, port_hex = local.split(":")
            raw = bytes.fromhex(address_hex)
            if family == socket.AF_INET:
                address = socket.inet_ntop(family, raw[::-1])
            else:
                address = socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            found.append((address, int(port_hex, 16)))
    return found


def test_nothing_listens_beyond_loopback(testbed: Testbed, postgres: Postgres) -> None:
    pids = {p.pid for p in testbed.processes} | {postgres.process.pid}
    sockets = _listening_sockets_of(pids)
    ports = {port for _, port in sockets}
    assert testbed.ports["kube-apiserver"] in ports
    assert postgres.port in ports
    assert testbed.ports["etcd"] in ports
    outside = [(a, p) for a, p in sockets if a not in ("127.0.0.1", "::1")]
    assert outside == [], f"listening beyond loopback: {outside}"


def test_apiserver_metrics_count_requests(testbed: Testbed) -> None:
    testbed.kubectl("get", "namespaces")
    metrics = testbed.apiserver_metrics()
    assert "apiserver_request_total{" in metrics
    assert 'resource="namespaces"' in metrics


def test_postgres_accepts_password_connections(postgres: Postgres) -> None:
    database = f"testbed_{secrets.token_hex(4)}"
    dsn = postgres.create_database(database)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("select current_database(), inet_server_addr()::text")
        assert cursor.fetchone() == (database, "127.0.0.1/32")
    connection.close()
    params = {**postgres.params(database), "password": "wrong"}
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**params, connect_timeout=5)


def test_helm_installs_a_chart_gated_on_the_server_version(
    testbed: Testbed, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.36.0-0 <1.37.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n"
        "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    assert testbed.helm("version", "--short").stdout.startswith("v3.")
    testbed.helm("install", "probe", str(chart), "-n", namespace, "--wait", "--timeout=60s")
    configmap = _get(testbed, "configmap", "probe", "-n", namespace)
    assert configmap["data"]["kube"].startswith("v1.36.")
    testbed.helm("uninstall", "probe", "-n", namespace, "--wait")
    assert testbed.kubectl("get", "configmap", "probe", "-n", namespace, check=False).returncode != 0


def test_garbage_collector_removes_dependents_of_a_deleted_owner(testbed: Testbed, namespace: str) -> None:
    _apply(testbed, namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    uid = _get(testbed, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dependent", "ownerReferences": [owner_ref]},
    }
    _apply(testbed, namespace, dependent)
    testbed.kubectl("delete", "configmap", "owner", "-n", namespace)
    deadline = time.monotonic() + 60
    while testbed.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the garbage collector never removed the dependent"
        time.sleep(0.5)
