"""`phlo-dagster-operator --all-namespaces` on a private control plane: an operator watching every namespace
of the shared bed would act on other sessions' workflows, so this test starts its own bed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.test_operator import WORKFLOW, Kubectl, Operator, wait_for
from tests.testbed import cluster
from tests.testbed.cluster import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # a control plane of its own


@pytest.fixture
def private_bed(tmp_path: Path) -> Iterator[Testbed]:
    bed = cluster.start(tmp_path / "bed")
    try:
        yield bed
    finally:
        bed.stop()


def test_all_namespaces_reconciles_every_namespace_with_cluster_peering(
    private_bed: Testbed, tmp_path: Path
) -> None:
    bed = private_bed
    bed.apply_crds()
    teams = ["team-a", "team-b"]
    for ns in teams:
        bed.kubectl("create", "namespace", ns)
        keys = [f"--from-literal={k}=x" for k in ("host", "user", "password", "database")]
        keys.append("--from-literal=port=5432")  # the operator checks that it is a port number
        bed.kubectl("-n", ns, "create", "secret", "generic", "pg", *keys)
        doc = yaml.safe_load(WORKFLOW.read_text())
        doc["spec"]["storage"] = {"postgres": {"secretName": "pg"}}
        bed.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(doc))
    op = Operator(bed, [], tmp_path / "operator.log", args=["--all-namespaces"]).start()
    try:
        for ns in teams:
            kc = Kubectl(bed, ns)
            kc("wait", "--for=condition=Ready", f"pwf/{doc['metadata']['name']}", "--timeout=120s")
            assert (
                len(kc.items("deployments", selector="app.kubernetes.io/managed-by=phlo-dagster-operator"))
                == 3
            )
        assert bed.kubectl("get", "clusterkopfpeering", "phlo-dagster-operator", check=False).returncode == 0
        assert op.metric("phlo_operator_workflows", condition="Ready", status="True") == 2
        # A namespace created after start is watched too. This bed has no Prometheus Operator: a workflow
        # asking for a ServiceMonitor still runs, and says why it has none.
        bed.kubectl("create", "namespace", "team-c")
        bed.kubectl("-n", "team-c", "create", "secret", "generic", "pg", *keys)
        doc["spec"]["metrics"] = {"serviceMonitor": {"enabled": True}}
        bed.kubectl("-n", "team-c", "apply", "-f", "-", input=json.dumps(doc))
        team_c = Kubectl(bed, "team-c")
        wait_for("team-c Ready", lambda: team_c.condition("Ready").get("status") == "True", timeout=120)
        status = team_c.must("pwf", doc["metadata"]["name"])["status"]
        assert status["metrics"] == {"serviceMonitor": "CRDMissing"}
        warnings = [e for e in team_c.events() if e["reason"] == "ServiceMonitorUnavailable"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning", team_c.events()
    finally:
        op.stop()
