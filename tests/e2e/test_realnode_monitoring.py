"""On the real node, a Prometheus configured from the ServiceMonitors scrapes the operator and a workflow.

The Prometheus Operator's own ServiceMonitor CRD (from its Go module, tests/testbed/monitoring.py) is
installed, then the chart with `metrics.serviceMonitor.enabled` and the quickstart PhloWorkflow with
`spec.metrics.serviceMonitor.enabled`. Debian's Prometheus runs inside the node's network namespace (pod IPs
are reachable there, as from a Prometheus pod), its scrape configuration rendered from the ServiceMonitors
read back from the API server by tests/e2e/servicemonitor.py, the documented equivalent of the Prometheus
Operator's rendering (docs/metrics.md). Debian's build has no Kubernetes service discovery, so the same module
lists the EndpointSlices, Services and Pods and passes their discovery labels through file_sd; the relabelling
runs in Prometheus. So the selectors, port names, paths and namespaces the chart and the operator write are
exactly what decides whether a target is found.

The tests run in file order: install, apply, then scrape.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.e2e import flow, servicemonitor
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.flow import Cluster
from tests.testbed import monitoring, realnode
from tests.testbed.realnode import RealNode

IMAGE = f"phlo-dagster:{flow.version()}"
INTERVAL = "10s"
OPERATOR_MONITOR = f"{flow.RELEASE}"
OPERATOR_SERVICE = f"{flow.RELEASE}-metrics"
WEBSERVER_MONITOR = WEBSERVER_SERVICE = f"{flow.WORKFLOW}-webserver"
FREE_PORT = (
    "import socket, sys\n"
    "s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()\n"
)


@pytest.fixture(scope="module")
def servicemonitor_crd(node: RealNode) -> Iterator[None]:
    """The Prometheus Operator's ServiceMonitor CRD, established; removed (with every ServiceMonitor) at the
    end."""
    bed = node.bed
    crd = monitoring.servicemonitor_crd()
    # Server-side: the CRD is too large for client-side apply's last-applied annotation.
    bed.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
    bed.kubectl("wait", "--for=condition=Established", f"crd/{monitoring.SERVICEMONITOR_CRD_NAME}")
    yield
    bed.kubectl("delete", "crd", monitoring.SERVICEMONITOR_CRD_NAME, "--ignore-not-found", check=False)


@dataclass
class Prometheus:
    url: str
    config: dict[str, Any]

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = flow.http_get(f"{self.url}{path}{query}")
        if status != 200:
            raise flow.FlowError(f"{path}: HTTP {status}: {body[:500]}")
        answer = json.loads(body)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])


def _servicemonitors(c: Cluster) -> list[dict[str, Any]]:
    return list(c.get("servicemonitors.monitoring.coreos.com", "-A", namespace=False)["items"])


@pytest.fixture(scope="module")
def prometheus(
    node: RealNode, cluster_flow: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Debian's Prometheus in the node's network namespace, configured from every ServiceMonitor there is."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: .ci/run installs Debian's prometheus package"
    work = ARTIFACTS / "prometheus"
    work.mkdir(parents=True, exist_ok=True)
    jobs = servicemonitor.scrape_configs(_servicemonitors(cluster_flow))
    objects = cluster_flow.get("endpointslices,services,pods", "-A", namespace=False)["items"]
    config = {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "scrape_configs": servicemonitor.with_file_sd(jobs, objects, work / "targets"),
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    enter = node.nsenter()
    found = subprocess.run(
        [*enter, sys.executable, "-c", FREE_PORT, realnode.NODE_ADDRESS],
        capture_output=True,
        text=True,
        check=True,
    )
    address = f"{realnode.NODE_ADDRESS}:{found.stdout.strip()}"
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            *enter,
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path_factory.mktemp('prometheus')}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        server = Prometheus(f"http://{address}", config)
        flow.wait(
            "Prometheus ready",
            lambda: proc.poll() is None and flow.http_get(f"{server.url}/-/ready", timeout=5)[0] == 200,
            60,
        )
        if proc.poll() is not None:
            raise flow.FlowError(
                f"prometheus exited {proc.returncode}: {(work / 'prometheus.log').read_text()}"
            )
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_chart_and_workflow_create_their_servicemonitors(
    servicemonitor_crd: None, cluster_flow: Cluster
) -> None:
    """The CRD is the Prometheus Operator's own: its schema checks what the chart and the operator write."""
    flow.install_operator(
        cluster_flow,
        (
            "--set", "metrics.serviceMonitor.enabled=true",
            "--set", f"metrics.serviceMonitor.interval={INTERVAL}",
        ),
    )  # fmt: skip
    monitor = {"enabled": True, "interval": INTERVAL}
    # Not waiting for Ready (the dbt compile gating the code server takes minutes): the webserver serves
    # /metrics, and has a pod behind its Service, long before.
    flow.apply_quickstart(cluster_flow, IMAGE, spec={"metrics": {"serviceMonitor": monitor}}, ready=False)
    flow.wait(
        "the quickstart webserver pod Ready",
        lambda: [p for p in flow.pods_of(cluster_flow, "webserver") if flow.pod_ready(p)],
        600,
        interval=2,
    )
    flow.wait(
        "status.metrics.serviceMonitor Applied",
        lambda: (
            (cluster_flow.get("pwf", flow.WORKFLOW).get("status") or {})
            .get("metrics", {})
            .get("serviceMonitor")
            == "Applied"
        ),
        120,
    )
    names = {m["metadata"]["name"] for m in _servicemonitors(cluster_flow)}
    assert {OPERATOR_MONITOR, WEBSERVER_MONITOR} <= names, names
    # The discovery below is a snapshot (file_sd): it starts once both Services list a ready endpoint.
    for service in (OPERATOR_SERVICE, WEBSERVER_SERVICE):
        flow.wait(
            f"a ready endpoint of {service}", functools.partial(_ready_endpoints, cluster_flow, service), 120
        )


def _ready_endpoints(c: Cluster, service: str) -> list[str]:
    slices = c.get("endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return [
        address
        for slice_ in slices
        for endpoint in slice_.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint.get("addresses", [])
    ]


def test_prometheus_from_the_servicemonitors_scrapes_operator_and_webserver(
    cluster_flow: Cluster, prometheus: Prometheus
) -> None:
    """Both targets are found through the ServiceMonitor-derived jobs, labelled with the pod that serves them,
    and up; the operator's and the webserver's build info arrive labelled with their namespace.

    Mutation (2026-12-06): the chart's ServiceMonitor endpoint `port: metrics` changed to `port: metric`
    (charts/phlo-dagster/templates/servicemonitor.yaml): the operator's job found no target and the test
    failed with "timed out ... waiting for every ServiceMonitor job to have its targets up"; so it did with
    the template's selector made `app.kubernetes.io/component: metrics`, a label the Service lacks."""
    ns = cluster_flow.namespace
    jobs = {
        f"serviceMonitor/{ns}/{OPERATOR_MONITOR}/0": (
            OPERATOR_SERVICE,
            f"app.kubernetes.io/instance={flow.RELEASE},app.kubernetes.io/component=operator",
        ),
        f"serviceMonitor/{ns}/{WEBSERVER_MONITOR}/0": (
            WEBSERVER_SERVICE,
            f"app.kubernetes.io/instance={flow.WORKFLOW},app.kubernetes.io/component=webserver",
        ),
    }
    configured = {job["job_name"] for job in prometheus.config["scrape_configs"]}
    assert set(jobs) <= configured, configured

    def targets_up() -> dict[str, list[dict[str, Any]]] | None:
        active = prometheus.get("/api/v1/targets", state="active")["activeTargets"]
        found = {job: [t for t in active if t["scrapePool"] == job] for job in jobs}
        if all(found[job] and all(t["health"] == "up" for t in found[job]) for job in jobs):
            return found
        seen = {
            job: [(t["labels"].get("pod"), t["health"], t["lastError"]) for t in ts]
            for job, ts in found.items()
        }
        raise flow.FlowError(f"targets by job: {seen}")

    found = flow.wait("every ServiceMonitor job to have its targets up", targets_up, 120, interval=2)
    for job, (service, selector) in jobs.items():
        items = cluster_flow.get("pods", "-l", selector)["items"]
        pods = {p["metadata"]["name"] for p in items if flow.pod_ready(p)}
        # One target per pod: a selector or port name matching more (the webserver Service's `http` port
        # reaches the same container port) would scrape a pod twice.
        assert len(found[job]) == len(pods), (found[job], pods)
        for target in found[job]:
            labels = target["labels"]
            assert labels["namespace"] == ns and labels["service"] == service, labels
            assert labels["job"] == service and labels["endpoint"] == "metrics", labels
            assert labels["pod"] in pods, (labels, pods)
    for expr in (
        f'phlo_operator_build_info{{job="{OPERATOR_SERVICE}"}}',
        f'dagster_build_info{{job="{WEBSERVER_SERVICE}"}}',
    ):
        series = flow.wait(expr, functools.partial(prometheus.query, expr), 60)
        assert {s["metric"]["namespace"] for s in series} == {ns}, series


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-v"]))
