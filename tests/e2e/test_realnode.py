"""End to end on the real node: every claim is observed in running pods built from the project's images.

The tests run in file order and build on each other (one operator release, one quickstart PhloWorkflow),
as a user's session would: install, apply, wait, use, upgrade, delete, uninstall.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import flow
from tests.e2e.flow import Cluster, FlowError
from tests.images import lock
from tests.testbed import realnode
from tests.testbed.realnode import RealNode

VERSION = flow.version()
IMAGE = f"phlo-dagster:{VERSION}"
OPERATOR_IMAGE = f"phlo-dagster-operator:{VERSION}"
V2_IMAGE = f"phlo-dagster:{VERSION}-e2e-v2"
INGEST = "raw/orders"


def _images(node: RealNode) -> set[str]:
    return set(node.ctr("images", "list", "--quiet").stdout.split())


def test_node_runs_the_project_images(node: RealNode) -> None:
    present = _images(node)
    for name in (IMAGE, OPERATOR_IMAGE, "postgres:17-alpine", realnode.PAUSE_IMAGE):
        assert realnode._canonical(name) in present, (
            f"{name} not in the node's containerd (run `make images`)"
        )


def test_operator_installs_and_takes_the_lead(cluster_flow: Cluster) -> None:
    pod = flow.install_operator(cluster_flow)
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    container = pod["spec"]["containers"][0]
    assert container["image"].endswith(OPERATOR_IMAGE)
    assert container.get("readinessProbe"), "the operator container has no readiness probe"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status


def test_quickstart_becomes_ready_with_real_pods(cluster_flow: Cluster) -> None:
    flow.apply_quickstart(cluster_flow, IMAGE)
    pods = flow.check_components(cluster_flow)
    for component in ("webserver", "daemon", "code-server"):
        for pod in pods[component]:
            containers = pod["spec"]["containers"]
            assert any(c.get("readinessProbe") for c in containers), f"{component} has no readiness probe"
    postgres = pods["postgres"][0]["spec"]["containers"][0]
    assert postgres["image"] == "postgres:17-alpine"
    claims = cluster_flow.get("pvc")["items"]
    assert claims and all(c["status"]["phase"] == "Bound" for c in claims), claims


def test_dbt_compile_job_really_compiled(cluster_flow: Cluster) -> None:
    logs = flow.dbt_compile_logs(cluster_flow)
    assert "dbt" in logs.lower() and ("compil" in logs.lower() or "manifest" in logs.lower()), logs[-2000:]


def test_every_pod_runs_under_restricted_pod_security(cluster_flow: Cluster) -> None:
    labels = cluster_flow.get("namespace", cluster_flow.namespace, namespace=False)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in cluster_flow.get("pods")["items"]:
        if pod["status"].get("phase") not in ("Running", "Succeeded"):
            continue
        spec = pod["spec"]
        assert spec["securityContext"].get("runAsNonRoot") or all(
            c["securityContext"].get("runAsNonRoot") for c in spec["containers"]
        ), pod["metadata"]["name"]
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc.get("readOnlyRootFilesystem") is True, (pod["metadata"]["name"], c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (pod["metadata"]["name"], c["name"])


def test_helm_test_passes(cluster_flow: Cluster) -> None:
    out = flow.helm_test(cluster_flow)
    assert "Succeeded" in out, out


def test_ui_graphql_and_metrics_through_port_forward(cluster_flow: Cluster) -> None:
    with cluster_flow.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        status, body = flow.http_get(base + "/")
        assert status == 200 and "<html" in body.lower(), body[:300]
        keys = flow.asset_keys(base)
        assert {INGEST, "stg_orders", "daily_revenue"} <= keys, keys
        status, text = flow.http_get(base + "/metrics")
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(text)}
        assert any(name.startswith("phlo_") or name.startswith("dagster_") for name in names), names


def test_code_server_port_answers_only_the_webserver_and_daemon(cluster_flow: Cluster) -> None:
    """NetworkPolicy enforced by the node (kube-router): admitted pods connect, any other pod is refused."""
    service = f"{flow.WORKFLOW}-code-server"
    port = 4000
    for component in ("webserver", "daemon"):
        pod = flow.pods_of(cluster_flow, component)[0]["metadata"]["name"]
        assert flow.connects(cluster_flow, pod, service, port), f"{component} cannot reach {service}:{port}"
    probe = flow.probe_pod(cluster_flow, "e2e-netpol-probe", IMAGE)
    # The probe's network works (the webserver has no ingress policy), so a refusal below is the policy's.
    assert flow.connects(cluster_flow, probe, f"{flow.WORKFLOW}-webserver", 3000)
    assert not flow.connects(cluster_flow, probe, service, port, timeout=5)
    cluster_flow.k("delete", "pod", probe, "--wait=false")


def test_materialization_runs_as_a_kubernetes_job(cluster_flow: Cluster) -> None:
    with cluster_flow.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        run_id, messages = flow.materialize(cluster_flow, base, INGEST)
        flow.screenshot(base, cluster_flow.artifacts / "asset-graph.png")
    assert any("loaded" in m and "orders" in m for m in messages), messages[-20:]
    pods = flow.wait(
        f"the pod of run {run_id} to end Succeeded",
        lambda: [p for p in flow.run_pods(cluster_flow, run_id) if p["status"].get("phase") == "Succeeded"],
        120,
    )
    assert pods[0]["spec"]["nodeName"] == realnode.NODE_NAME


SECRET_KEY = re.compile(r"password|secret|token|credential|key", re.IGNORECASE)


def _secret_values(c: Cluster) -> dict[str, str]:
    """The values of the namespace's Opaque Secrets under a key that names a secret (a password, a token),
    by "secret/key". A Secret's other keys (the database host, port and user of the storage Secret) are
    settings that logs may name."""
    found = {}
    for secret in c.get("secrets")["items"]:
        if secret.get("type") != "Opaque":
            continue
        for key, encoded in (secret.get("data") or {}).items():
            value = base64.b64decode(encoded).decode(errors="replace")
            if SECRET_KEY.search(key) and len(value) >= 8:
                found[f"{secret['metadata']['name']}/{key}"] = value
    return found


def test_no_secret_value_in_configmaps_env_logs_events_or_status(cluster_flow: Cluster) -> None:
    """After install, Ready, a dbt compile and a run: no value of a Secret appears in a ConfigMap, a literal
    env value of any pod, the logs of any container (the operator's, the components', the dbt Job's, the
    run's), an Event or the PhloWorkflow's status. The managed PostgreSQL password is generated, so it is
    among them."""
    values = _secret_values(cluster_flow)
    assert any("password" in k for k in values), f"no password among the Secrets: {sorted(values)}"
    places: dict[str, str] = {}
    for cm in cluster_flow.get("configmaps")["items"]:
        places[f"configmap/{cm['metadata']['name']}"] = json.dumps(cm.get("data") or {})
    for pod in cluster_flow.get("pods")["items"]:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            literals = [e.get("value", "") for e in container.get("env", [])]
            places[f"env of {name}/{container['name']}"] = "\n".join(literals)
            logs = cluster_flow.k("logs", name, "-c", container["name"], check=False, timeout=60)
            places[f"log of {name}/{container['name']}"] = logs.stdout + logs.stderr
    events = cluster_flow.get("events")["items"]
    places["events"] = "\n".join(e.get("message", "") for e in events)
    for cr in cluster_flow.get("pwf")["items"]:
        places[f"status of pwf/{cr['metadata']['name']}"] = json.dumps(cr.get("status") or {})
    assert sum(1 for p in places if p.startswith("log of ")) >= 4, sorted(places)
    leaks = [(where, key) for key, value in values.items() for where, text in places.items() if value in text]
    assert not leaks, f"Secret values found (place, secret/key): {leaks}"


def test_ready_means_a_run_can_launch_at_once(cluster_flow: Cluster) -> None:
    """Several times: restart the code server, wait for Ready, launch at once; never PipelineNotFound. From
    before each restart until the old pod is gone, the webserver is asked for an execution plan (a gRPC call
    to the code server through its Service, as launchRun makes) every 0.2 s: none may fail. The old pod
    answers until kube-proxy has dropped it (pods.DRAIN_SECONDS); without that, launchRun right after Ready
    met a code server that had already exited (HTTP 500)."""
    code_server, workflow = f"deployment/{flow.WORKFLOW}-code-server", f"pwf/{flow.WORKFLOW}"
    with cluster_flow.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        selector, _ = flow.asset_job(base, INGEST)
        for attempt in range(3):
            old = _code_server_pods(cluster_flow)
            with _planning(base, selector) as probes:
                cluster_flow.k("rollout", "restart", code_server)
                flow.wait(
                    "Ready to drop while the code server restarts",
                    lambda: (
                        _condition(cluster_flow, "Ready") != "True"
                        or _condition(cluster_flow, "Progressing") == "True"
                    ),
                    60,
                    interval=0.5,
                )
                cluster_flow.k("wait", "--for=condition=Ready", workflow, "--timeout=10m", timeout=620)
                run_id = flow.launch(base, INGEST)
                gone = [f"pod/{p}" for p in old]
                cluster_flow.k("wait", "--for=delete", *gone, "--timeout=120s", timeout=130)
            assert not probes.failed, f"attempt {attempt}: plans failed in the restart: {probes.failed[:5]}"
            answered = f"only {probes.answered} plans answered ({probes.unreachable} port-forward errors)"
            assert probes.answered >= 20, f"attempt {attempt}: {answered}"
            assert flow.wait_run(base, run_id) == "SUCCESS", f"attempt {attempt}: run {run_id}"


@dataclass
class _Probes:
    answered: int = 0
    failed: list[str] = field(default_factory=list)  # the webserver's answers that carried no plan
    unreachable: int = 0  # the port-forward itself did not answer (not the code server's doing)


@contextlib.contextmanager
def _planning(base: str, selector: dict[str, Any]) -> Iterator[_Probes]:
    probes, stop = _Probes(), threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                flow.execution_plan(base, selector)
                probes.answered += 1
            except FlowError as error:
                probes.failed.append(f"{time.strftime('%H:%M:%S')} {error}")
            except OSError:
                probes.unreachable += 1
            stop.wait(0.2)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield probes
    finally:
        stop.set()
        thread.join(90)


def _code_server_pods(c: Cluster) -> list[str]:
    return [p["metadata"]["name"] for p in flow.pods_of(c, "code-server")]


def _condition(c: Cluster, kind: str) -> str | None:
    wf = c.get("pwf", flow.WORKFLOW)
    for cond in wf.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None


# Only in the v2 image: an asset whose run proves the code server serves the new code.
V2_WORKFLOW = '''"""Only in the v2 image: proves the code server serves the new code."""

from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset


def _version(context):
    context.logger.info("e2e code version v2")
    return MaterializeResult(metadata={"version": "v2"})


register_asset(
    AssetSpec(key="e2e.version", group="e2e", description="v2 marker.", run=RunSpec(fn=_version))
)
'''


def test_new_image_tag_rolls_the_code_server_and_the_next_run_uses_it(
    node: RealNode, cluster_flow: Cluster
) -> None:
    flow.build_workflow_image(
        V2_IMAGE,
        "workflows-v2",
        {"e2e_version.py": V2_WORKFLOW},
        timeout=1800,
    )
    realnode.load_images(node)
    before = {p["metadata"]["name"] for p in flow.pods_of(cluster_flow, "code-server")}
    patch = json.dumps({"spec": {"image": V2_IMAGE}})
    cluster_flow.k("patch", "pwf", flow.WORKFLOW, "--type=merge", "-p", patch)
    flow.wait(
        "a code-server pod of the new image",
        lambda: any(
            p["spec"]["containers"][0]["image"] == V2_IMAGE and p["metadata"]["name"] not in before
            for p in flow.pods_of(cluster_flow, "code-server")
        ),
        600,
        interval=2,
    )
    cluster_flow.k("wait", "--for=condition=Ready", f"pwf/{flow.WORKFLOW}", "--timeout=10m", timeout=620)
    with cluster_flow.port_forward(f"svc/{flow.WORKFLOW}-webserver", 3000) as base:
        flow.wait("the webserver to list e2e/version", lambda: "e2e/version" in flow.asset_keys(base), 180)
        run_id, messages = flow.materialize(cluster_flow, base, "e2e/version")
    assert any("e2e code version v2" in m for m in messages), messages[-20:]
    pods = flow.run_pods(cluster_flow, run_id)
    assert pods and pods[0]["spec"]["containers"][0]["image"] == V2_IMAGE
    # The version gate read the image's Dagster (the lock's): the same version moves without a migration.
    status = cluster_flow.get("pwf", flow.WORKFLOW)["status"]
    dagster = next(version for name, version, _ in lock.pins() if name == "dagster")
    assert status["instance"]["image"] == V2_IMAGE and status["instance"]["dagsterVersion"] == dagster, status
    assert status["instance"].get("schemaHead"), status["instance"]
    migrated = next(c for c in status["conditions"] if c["type"] == "Migrated")
    assert (migrated["status"], migrated["reason"]) == ("True", "UpToDate"), migrated
    selector = f"app.kubernetes.io/instance={flow.WORKFLOW},app.kubernetes.io/component=instance-migrate"
    assert cluster_flow.get("jobs", "-l", selector)["items"] == []


def test_deleting_the_workflow_removes_its_run_jobs(cluster_flow: Cluster) -> None:
    jobs = [
        j for j in cluster_flow.get("jobs")["items"] if "dagster/run-id" in j["metadata"].get("labels", {})
    ]
    assert jobs, "the runs above left no run Job to clean up"
    cluster_flow.k("delete", "pwf", flow.WORKFLOW, "--timeout=5m", timeout=320)

    def gone() -> bool:
        left = cluster_flow.get("jobs,pods", "-l", "dagster/run-id")["items"]
        return not left

    flow.wait("run Jobs and pods of the deleted workflow to go", gone, 180, interval=2)


def test_helm_uninstall_leaves_nothing_of_the_operator(cluster_flow: Cluster) -> None:
    cluster_flow.helm(
        "uninstall", flow.RELEASE, "--namespace", cluster_flow.namespace, "--wait", "--timeout", "5m"
    )
    flow.wait(
        "the operator's pods to go",
        lambda: not cluster_flow.get("pods", "-l", "app.kubernetes.io/name=phlo-dagster")["items"],
        180,
    )
    left = cluster_flow.kubectl(
        "get",
        "clusterroles,clusterrolebindings",
        "-o",
        "name",
        "-l",
        f"app.kubernetes.io/instance={flow.RELEASE}",
    ).stdout.split()
    assert not left, left
    rest = cluster_flow.k("get", "deploy,sa,svc,cm,secret,role,rolebinding", "-o", "name").stdout.split()
    operator_rest = [r for r in rest if flow.RELEASE in r and "root-ca" not in r]
    assert not operator_rest, operator_rest


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-v"]))
_ = FlowError
