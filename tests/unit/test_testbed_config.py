"""The test bed's generated configuration: certificates, kubeconfigs, command lines and kwok stages."""

from __future__ import annotations

import ipaddress
import json
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import _namespace_name
from tests.testbed import cluster, state
from tests.testbed.pki import CLIENTS, Pki, create_pki
from tests.testbed.postgres import Postgres
from tests.testbed.processes import Process, free_ports

pytestmark = pytest.mark.unit


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_cert_is_signed_by_ca_for_loopback(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    ca, serving = _load(pki.ca_cert), _load(pki.serving_cert)
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_admin_client_cert_is_system_masters(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    admin = _load(pki.client_cert("admin"))
    admin.verify_directly_issued_by(_load(pki.ca_cert))
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    scheduler = _load(pki.client_cert("scheduler"))
    assert scheduler.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-scheduler"
    assert not scheduler.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    pki = create_pki(tmp_path)
    keys = [pki.ca_key, pki.serving_key, pki.sa_key, *(pki.client_key(name) for name in CLIENTS)]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_client_key_matches_its_certificate(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pki = create_pki(tmp_path)
    key = load_pem_private_key(pki.client_key("admin").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == _load(pki.client_cert("admin")).public_key()


def test_token_kubeconfig_carries_only_the_token(tmp_path: Path) -> None:
    text = cluster.render_kubeconfig("https://127.0.0.1:6443", b"CA", {"token": "abc"})
    config = yaml.safe_load(text)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"] == {"token": "abc"}
    assert config["current-context"] == config["contexts"][0]["name"]


def test_every_listener_binds_loopback(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki")
    ports = dict(
        zip(
            ["etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler"],
            range(20000, 20005),
            strict=True,
        )
    )
    for name in cluster.COMPONENTS:
        argv = cluster._component_argv(name, tmp_path / "bin", tmp_path, pki, ports, cluster.Placement())
        joined = " ".join(argv)
        assert "0.0.0.0" not in joined, name
        for flag in ("--bind-address", "--advertise-address", "--listen-client-urls", "--listen-peer-urls"):
            for arg in argv:
                if arg.startswith(flag + "="):
                    assert "127.0.0.1" in arg, arg


def test_apiserver_enforces_rbac_and_pod_security() -> None:
    argv = cluster._component_argv(
        "kube-apiserver", Path("/b"), Path("/d"), Pki(Path("/pki")), _ports(), cluster.Placement()
    )
    assert "--authorization-mode=Node,RBAC" in argv
    admission = next(a for a in argv if a.startswith("--enable-admission-plugins="))
    assert "PodSecurity" in admission


def _ports() -> dict[str, int]:
    return {"etcd": 1, "etcd-peer": 2, "kube-apiserver": 3, "kube-controller-manager": 4, "kube-scheduler": 5}


def _stages() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(cluster.STAGES.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Stage"}


def test_kwok_config_has_the_stages_tests_rely_on() -> None:
    assert set(_stages()) >= {
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-fail",
        "pod-delete",
    }


def _expressions(stage: dict) -> dict[str, dict]:
    return {e["key"]: e for e in stage["spec"]["selector"]["matchExpressions"]}


def test_fail_annotation_takes_precedence_over_job_completion() -> None:
    stages = _stages()
    key = '.metadata.annotations["kwok.phlo.dev/fail"]'
    complete = _expressions(stages["pod-complete"])[key]
    fail = _expressions(stages["pod-fail"])[key]
    assert (complete["operator"], complete["values"]) == ("NotIn", ["true"])
    assert (fail["operator"], fail["values"]) == ("In", ["true"])
    template = stages["pod-fail"]["spec"]["next"]["statusTemplate"]
    assert "exitCode: 1" in template
    assert "phase: Failed" in template


def test_fake_nodes_are_managed_by_kwok_and_untainted() -> None:
    node = cluster.fake_node("n1")
    assert node["metadata"]["annotations"][cluster.FAKE_NODE_ANNOTATION] == "fake"
    assert "taints" not in node.get("spec", {})
    assert int(node["status"]["allocatable"]["pods"]) >= 100
    json.dumps(node)


@pytest.mark.parametrize("test_name", ["test_x[param-1]", "A" * 200, "___", "test_ünïcode"])
def test_namespace_names_are_dns_labels(test_name: str) -> None:
    name = _namespace_name(test_name)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert _namespace_name(test_name) != name


def _server() -> Postgres:
    return Postgres(
        "127.0.0.1",
        5432,
        "phlo",
        "p@ss/word",
        Path("/x"),
        Process("postgres", 1, "postgres", Path("/l")),
        Path("/x/data"),
    )


def test_postgres_dsn_quotes_the_password() -> None:
    assert _server().dsn("db1") == "postgresql://phlo:p%40ss%2Fword@127.0.0.1:5432/db1"
    assert _server().params("db1")["database"] == "db1"


@pytest.mark.parametrize("bad", ["", "Upper", "has-dash", "x" * 64, "1abc", 'a"; drop'])
def test_postgres_rejects_unsafe_database_names(bad: str) -> None:
    with pytest.raises(ValueError, match="database name"):
        _server().create_database(bad)


def test_state_parts_are_independent(tmp_path: Path) -> None:
    state.update(tmp_path, "cluster", {"a": 1})
    state.update(tmp_path, "postgres", {"b": 2})
    state.update(tmp_path, "cluster", None)
    assert state.read(tmp_path) == {"postgres": {"b": 2}}
    state.update(tmp_path, "postgres", None)
    assert not (tmp_path / state.FILE).exists()
    assert state.read(tmp_path) == {}


def test_free_ports_are_distinct() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert all(1024 < p < 65536 for p in ports)


def _build_version(name: str) -> str:
    text = (cluster.REPO / "tests/testbed/build.sh").read_text()
    match = re.search(rf"^{name}=(v[0-9.]+)", text, re.MULTILINE)
    assert match, name
    return match.group(1)


def test_wrapper_module_matches_the_versions_the_build_stamps() -> None:
    gomod = (cluster.REPO / "tests/testbed/gomod/go.mod").read_text()
    k8s = _build_version("K8S_VERSION")
    assert re.search(rf"^\s*(require )?k8s\.io/kubernetes {re.escape(k8s)}\b", gomod, re.MULTILINE)
    etcd = _build_version("ETCD_VERSION")
    assert re.search(rf"^\s*(require )?go\.etcd\.io/etcd/server/v3 {re.escape(etcd)}\b", gomod, re.MULTILINE)
    staging = "v0." + k8s.removeprefix("v1.")
    replaces = re.findall(r"^\s*(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (v\S+)$", gomod, re.MULTILINE)
    assert len(replaces) >= 30
    for source, target, version in replaces:
        assert source == target
        assert version == staging, f"{source} replaced with {version}, expected {staging}"
    for tool in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        assert f"k8s.io/kubernetes/cmd/{tool}\n" in gomod


def _offline_bed(tmp_path: Path, **fields: Any) -> cluster.Testbed:
    """A Testbed record under tmp_path whose server answers nowhere (port 1)."""
    return cluster.Testbed(
        directory=tmp_path,
        bin_dir=tmp_path / "bin",
        server="https://127.0.0.1:1",
        kubeconfig=tmp_path / "kubeconfig",
        ca_file=tmp_path / "ca.crt",
        client_cert=tmp_path / "admin.crt",
        client_key=tmp_path / "admin.key",
        ports={"kube-apiserver": 1},
        **fields,
    )


def test_a_recorded_bed_whose_processes_are_gone_is_not_reused(tmp_path: Path) -> None:
    # PID 1 runs, but it is not our etcd: the PID-reuse guard must notice.
    bed = _offline_bed(
        tmp_path, processes=[Process("etcd", 1, "etcd-not-running-here", tmp_path / "etcd.log")]
    )
    state.update(tmp_path, "cluster", bed.to_json())
    assert cluster.Testbed.from_json(state.read(tmp_path)["cluster"]) == bed
    assert cluster.attach(tmp_path) is None
    assert cluster.attach(tmp_path / "nothing-recorded") is None


def test_kubectl_runs_as_long_as_the_timeout_passed_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Kubectl.wait_condition(timeout=180)` once became `kubectl wait --timeout=180s` killed after the
    process default of 60 s. Mutation run (2026-12-02): dropping the line
    `timeout = max(timeout, kubectl_process_timeout(args))` from Testbed.kubectl makes this test fail
    (`60 >= 190` is false). On a started bed, `kubectl wait --for=condition=Never cm/kt --timeout=75s`
    through Testbed.kubectl ended after 75 s with kubectl's own "timed out waiting for the condition";
    without that line, subprocess.TimeoutExpired after 60 s."""
    from tests.integration.test_operator import Kubectl

    bed = _offline_bed(tmp_path)
    seen: list[tuple[list[str], float]] = []

    def run(argv: list[str], input: str | None, check: bool, timeout: float) -> Any:
        seen.append((argv, timeout))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(bed, "_run", run)
    Kubectl(bed, "ns").wait_condition("Ready", timeout=180)
    argv, timeout = seen[-1]
    assert "--timeout=180s" in argv and timeout >= 180 + 10, timeout
    bed.kubectl("rollout", "status", "deploy/x", "--timeout", "2m")
    assert seen[-1][1] >= 120 + 10
    bed.kubectl("delete", "pwf", "x", "--timeout=1m30s", timeout=300)
    assert seen[-1][1] == 300  # a longer process timeout given by the caller stays
    bed.kubectl("get", "pods")
    assert seen[-1][1] == 60  # no kubectl timeout: the default
    assert cluster.kubectl_duration("1m30s") == 90 and cluster.kubectl_duration("250ms") == 0.25
    assert cluster.kubectl_duration("90") == 90 and cluster.kubectl_duration("soon") is None
