"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler, kwok."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.testbed import postgres, state
from tests.testbed.pki import Pki, create_pki
from tests.testbed.processes import LOOPBACK, Process, TestbedError, alive, free_ports, spawn, stop, wait_for

REPO = Path(__file__).resolve().parents[2]
# The long-lived bed of `make testbed-up` lives here (PHLO_TESTBED_DIR moves it, e.g. to run a second one).
ROOT = Path(os.environ.get("PHLO_TESTBED_DIR") or REPO / ".testbed").resolve()
# PHLO_TESTBED_BIN_DIR: `make test` points it at an empty directory while the binaries build, so a test that
# needs them and is not marked `binaries` fails there at once instead of passing only on a warm machine.
BIN_DIR = Path(os.environ.get("PHLO_TESTBED_BIN_DIR") or REPO / ".testbed" / "bin")
STAGES = Path(__file__).with_name("kwok-stages.yaml")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAIL_ANNOTATION = "kwok.phlo.dev/fail"
NODE_COUNT = 2
SERVICE_CIDR = "10.96.0.0/16"
# Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class TestbedCommandError(subprocess.CalledProcessError):
    """kubectl or helm exited non-zero; str() carries the command's stderr so failures read well."""

    __test__ = False

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {(self.stderr or '').strip()}"


@dataclass
class Testbed:
    """A running control plane: where its kubeconfig, CA and binaries are, and helpers to talk to it."""

    __test__ = False

    directory: Path
    bin_dir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    ports: dict[str, int]
    processes: list[Process] = field(default_factory=list)

    # --- contract used by every integration test -------------------------------------------------------
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, PATH with bin_dir first, and helm state kept inside the bed."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        helm_home = self.directory / "helm"
        env.setdefault("HELM_CACHE_HOME", str(helm_home / "cache"))
        env.setdefault("HELM_CONFIG_HOME", str(helm_home / "config"))
        env.setdefault("HELM_DATA_HOME", str(helm_home / "data"))
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the bed's kubectl as cluster admin. A `--timeout` given to kubectl (wait, rollout status,
        delete) is honoured: the process may run that long plus a margin, whatever `timeout` says."""
        timeout = max(timeout, kubectl_process_timeout(args))
        argv = [str(self.bin_dir / "kubectl"), *args]
        if args[:1] == ("wait",) and any(a.startswith("--for=condition=") for a in args):
            # kubectl wait fails at once, instead of waiting, on an object whose status has no conditions
            # yet (a CRD applied a moment ago): look again until the conditions exist.
            deadline = time.monotonic() + timeout
            while True:
                result = self._run(argv, input, False, timeout)
                early = result.returncode != 0 and "accessor error: <nil>" in result.stderr
                if not early or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if check and result.returncode != 0:
                raise TestbedCommandError(result.returncode, argv, result.stdout, result.stderr)
            return result
        return self._run(argv, input, check, timeout)

    def apply_crds(self) -> None:
        """The repository's CRDs (crds/: PhloWorkflow, kopf peering), server-side applied and established."""
        for path in sorted((REPO / "crds").glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        self.kubectl("wait", "--for=condition=Established", "crd/phloworkflows.phlo.dev", "--timeout=60s")

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the bed's helm (v3) against this cluster."""
        return self._run([str(self.bin_dir / "helm"), *args], None, check, timeout)

    def apiserver_metrics(self) -> str:
        """Raw Prometheus text of the API server's /metrics (e.g. to count writes by verb and resource)."""
        return self._get("/metrics")

    def token(self, namespace: str, service_account: str, duration: str = "3600s") -> str:
        """A bound service-account token signed by the API server (kubectl create token)."""
        out = self.kubectl("create", "token", service_account, "-n", namespace, f"--duration={duration}")
        return out.stdout.strip()

    def kubeconfig_for_token(self, token: str) -> Path:
        """A kubeconfig that authenticates with token only (no admin client cert)."""
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        path = self.directory / "tokens" / f"{digest}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_kubeconfig(self.server, self.ca_file.read_bytes(), {"token": token}))
        path.chmod(0o600)
        return path

    # --- lifecycle ------------------------------------------------------------------------------------
    def alive(self) -> bool:
        """True when every process runs and the API server answers /readyz."""
        if not self.processes or not all(alive(p) for p in self.processes):
            return False
        try:
            return self._get("/readyz", timeout=3).strip() == "ok"
        except Exception:
            return False

    def stop(self) -> None:
        """Stop every process by PID (reverse start order) and drop etcd's data."""
        for process in reversed(self.processes):
            stop(process)
        shutil.rmtree(self.directory / "etcd-data", ignore_errors=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "bin_dir": str(self.bin_dir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ca_file": str(self.ca_file),
            "client_cert": str(self.client_cert),
            "client_key": str(self.client_key),
            "ports": self.ports,
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Testbed:
        return cls(
            directory=Path(data["directory"]),
            bin_dir=Path(data["bin_dir"]),
            server=data["server"],
            kubeconfig=Path(data["kubeconfig"]),
            ca_file=Path(data["ca_file"]),
            client_cert=Path(data["client_cert"]),
            client_key=Path(data["client_key"]),
            ports={k: int(v) for k, v in data["ports"].items()},
            processes=[Process.from_json(p) for p in data["processes"]],
        )

    # --- internals ------------------------------------------------------------------------------------
    def _run(
        self, argv: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )
        if check and result.returncode != 0:
            raise TestbedCommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def _get(self, path: str, timeout: float = 10) -> str:
        with urllib.request.urlopen(
            f"{self.server}{path}", context=self._ssl_context(), timeout=timeout
        ) as r:
            return r.read().decode()


KUBECTL_TIMEOUT_MARGIN = 30.0  # seconds beyond kubectl's own --timeout: it reports the timeout itself
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def kubectl_duration(text: str) -> float | None:
    """Seconds of a kubectl duration flag value ("180s", "2m", "1m30s", "90"); None when not one."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        return None
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def kubectl_process_timeout(args: tuple[str, ...] | list[str]) -> float:
    """How long a kubectl command line may run: its --timeout (or --request-timeout) plus a margin; 0 when it
    sets neither (the caller's default applies)."""
    longest = 0.0
    for i, arg in enumerate(args):
        for flag in ("--timeout", "--request-timeout"):
            value = None
            if arg.startswith(flag + "="):
                value = arg[len(flag) + 1 :]
            elif arg == flag and i + 1 < len(args):
                value = args[i + 1]
            seconds = kubectl_duration(value) if value is not None else None
            if seconds:
                longest = max(longest, seconds + KUBECTL_TIMEOUT_MARGIN)
    return longest


def render_kubeconfig(server: str, ca_pem: bytes, user: dict[str, str], name: str = "phlo-testbed") -> str:
    """A single-context kubeconfig (JSON, which is valid YAML) with the CA and credentials embedded."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    return json.dumps(config, indent=2) + "\n"


def client_cert_user(pki: Pki, stem: str) -> dict[str, str]:
    """kubeconfig user entry authenticating with one of the bed's client certificates."""
    return {
        "client-certificate-data": base64.b64encode(pki.client_cert(stem).read_bytes()).decode(),
        "client-key-data": base64.b64encode(pki.client_key(stem).read_bytes()).decode(),
    }


def fake_node(name: str, tainted: bool = False) -> dict[str, Any]:
    """A Node kwok manages (by annotation), with generous allocatable resources; tainted by a real node."""
    resources = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }
    if tainted:
        node["spec"] = {"taints": [FAKE_NODE_TAINT]}
    return node


def missing_binaries(bin_dir: Path = BIN_DIR) -> list[str]:
    return [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]


def ensure_binaries(bin_dir: Path = BIN_DIR) -> None:
    """Build (or link from the cache) the binaries when any is missing from bin_dir."""
    if not missing_binaries(bin_dir):
        return
    print("testbed: binaries missing, running tests/testbed/build.sh", file=sys.stderr)
    result = subprocess.run(["bash", str(REPO / "tests/testbed/build.sh")], check=False)
    still = missing_binaries(bin_dir)
    if result.returncode != 0 or still:
        raise TestbedError(f"tests/testbed/build.sh failed (exit {result.returncode}); missing: {still}")


@dataclass(frozen=True)
class Placement:
    """Where the control plane runs. The default is the kwok bed: every listener on the host's 127.0.0.1.
    The real node (realnode.py) runs it inside its own network and mount namespaces (wrap enters them),
    the API server on the node's address so pods and the host both reach it, and taints the kwok nodes."""

    address: str = LOOPBACK
    wrap: tuple[str, ...] = ()
    taint_fake_nodes: bool = False
    extra_args: dict[str, tuple[str, ...]] = field(default_factory=dict)


# Taint on kwok's fake nodes while a real node is present: nothing lands there unless it tolerates this.
FAKE_NODE_TAINT = {"key": FAKE_NODE_ANNOTATION, "value": "fake", "effect": "NoSchedule"}


def _component_argv(
    name: str, bin_dir: Path, d: Path, pki: Pki, ports: dict[str, int], placement: Placement
) -> list[str]:
    """Command line of one control-plane component (extra arguments from the placement appended)."""
    return [*_base_argv(name, bin_dir, d, pki, ports, placement.address), *placement.extra_args.get(name, ())]


def _base_argv(name: str, bin_dir: Path, d: Path, pki: Pki, ports: dict[str, int], address: str) -> list[str]:
    """Command line of one control-plane component; only the API server listens beyond 127.0.0.1."""
    b = str(bin_dir / name)
    if name == "etcd":
        peer = f"http://{LOOPBACK}:{ports['etcd-peer']}"
        client = f"http://{LOOPBACK}:{ports['etcd']}"
        return [
            b,
            "--name=testbed",
            f"--data-dir={d / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ]
    if name == "kube-apiserver":
        return [
            b,
            f"--etcd-servers=http://{LOOPBACK}:{ports['etcd']}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={ports['kube-apiserver']}",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
            # Privileged pods are allowed by the server; Pod Security admission decides per namespace.
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
    kubeconfig = d / f"{name}.kubeconfig"
    if name == "kwok":
        return [
            b,
            f"--kubeconfig={kubeconfig}",
            f"--config={STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            "--v=INFO",
        ]
    common = [
        b,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports[name]}",
        f"--cert-dir={d / (name + '-certs')}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
    if name == "kube-controller-manager":
        return [
            *common,
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ]
    if name == "kube-scheduler":
        return common
    raise ValueError(f"unknown component {name!r}")


def _start_once(directory: Path, bin_dir: Path, placement: Placement | None = None) -> Testbed:
    """One attempt at starting the control plane in directory; stops what it started on failure."""
    placement = placement or Placement()
    for stale in ("etcd-data", "pki", "tokens"):
        shutil.rmtree(directory / stale, ignore_errors=True)
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    extra_ips = () if placement.address == LOOPBACK else (placement.address,)
    pki = create_pki(directory / "pki", extra_ips=extra_ips)
    names = ["etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    server = f"https://{placement.address}:{ports['kube-apiserver']}"
    ca_pem = pki.ca_cert.read_bytes()
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(render_kubeconfig(server, ca_pem, client_cert_user(pki, "admin")))
    kubeconfig.chmod(0o600)
    for name, stem in (
        ("kube-controller-manager", "controller-manager"),
        ("kube-scheduler", "scheduler"),
        ("kwok", "kwok"),
    ):
        path = directory / f"{name}.kubeconfig"
        path.write_text(render_kubeconfig(server, ca_pem, client_cert_user(pki, stem)))
        path.chmod(0o600)

    bed = Testbed(
        directory=directory,
        bin_dir=bin_dir,
        server=server,
        kubeconfig=kubeconfig,
        ca_file=pki.ca_cert,
        client_cert=pki.client_cert("admin"),
        client_key=pki.client_key("admin"),
        ports=ports,
    )
    try:
        for name in COMPONENTS:
            argv = _component_argv(name, bin_dir, directory, pki, ports, placement)
            bed.processes.append(
                spawn(name, [*placement.wrap, *argv], logs / f"{name}.log", cwd=directory, executable=name)
            )
            # Inside the node's namespaces etcd's loopback is not ours: the API server's /readyz covers it.
            if name == "etcd" and not placement.wrap:
                wait_for(
                    "etcd /health",
                    lambda: (
                        b"true"
                        in urllib.request.urlopen(
                            f"http://{LOOPBACK}:{ports['etcd']}/health", timeout=2
                        ).read()
                    ),
                    60,
                    bed.processes,
                )
            elif name == "kube-apiserver":
                wait_for("kube-apiserver /readyz", lambda: bed._get("/readyz", 3) == "ok", 180, bed.processes)
        nodes = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [fake_node(f"kwok-node-{i}", placement.taint_fake_nodes) for i in range(NODE_COUNT)],
        }
        bed.kubectl("apply", "-f", "-", input=json.dumps(nodes))
        wait_for("the default ServiceAccount", lambda: _has_default_sa(bed), 120, bed.processes)
        wait_for(
            f"{NODE_COUNT} Ready kwok nodes", lambda: _ready_nodes(bed) >= NODE_COUNT, 120, bed.processes
        )
    except BaseException:
        bed.stop()
        raise
    return bed


def _has_default_sa(bed: Testbed) -> bool:
    return (
        bed.kubectl("get", "serviceaccount", "default", "-n", "default", check=False, timeout=10).returncode
        == 0
    )


def _ready_nodes(bed: Testbed) -> int:
    out = bed.kubectl("get", "nodes", "-o", "json", timeout=10).stdout
    count = 0
    for node in json.loads(out)["items"]:
        conditions = node.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            count += 1
    return count


def start(
    directory: Path,
    bin_dir: Path = BIN_DIR,
    attempts: int = 3,
    placement: Placement | None = None,
    state_key: str = "cluster",
) -> Testbed:
    """Start a fresh bed in directory (retrying with new ports), record it in directory/state.json."""
    ensure_binaries(bin_dir)
    directory.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            bed = _start_once(directory, bin_dir, placement)
        except TestbedError as error:
            errors.append(f"attempt {attempt}: {error}")
            print(f"testbed: start attempt {attempt} failed: {str(error).splitlines()[0]}", file=sys.stderr)
            continue
        state.update(directory, state_key, bed.to_json())
        print(
            f"testbed: control plane ready in {time.monotonic() - started:.1f}s at {bed.server}",
            file=sys.stderr,
        )
        return bed
    raise TestbedError(
        f"the test bed did not start after {attempts} attempts (logs in {directory / 'logs'}):\n"
        + "\n".join(errors)
    )


def attach(directory: Path) -> Testbed | None:
    """The bed recorded in directory/state.json when it is still alive and ready, else None."""
    data = state.read(directory).get("cluster")
    if not data:
        return None
    bed = Testbed.from_json(data)
    return bed if bed.alive() else None


def stop_recorded(directory: Path) -> bool:
    """Stop the bed recorded in directory/state.json (alive or half-dead); True when one was recorded."""
    data = state.read(directory).get("cluster")
    if not data:
        return False
    Testbed.from_json(data).stop()
    state.update(directory, "cluster", None)
    return True


def prune_sessions(keep: int = 3) -> None:
    """Stop leftovers of sessions that died without teardown; keep only the newest few dirs for their logs."""
    sessions = ROOT / "sessions"
    if not sessions.is_dir():
        return
    finished = [d for d in sessions.iterdir() if d.is_dir() and not _pid_running(d.name)]
    for directory in finished:
        stop_recorded(directory)
        postgres.stop_recorded(directory)
    finished.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for directory in finished[keep:]:
        shutil.rmtree(directory, ignore_errors=True)


def _pid_running(name: str) -> bool:
    return name.isdigit() and Path(f"/proc/{name}").exists()
