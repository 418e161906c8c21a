"""A real Kubernetes node beside the bed's control plane: kubelet, containerd, runc, CNI, kube-proxy, CoreDNS.

Everything runs inside one network namespace and one private mount namespace of its own, held open by a
`sleep` process (the holder). The host keeps only a veth pair into that namespace (its end carries
HOST_ADDRESS, the node's end NODE_ADDRESS): the API server listens on the node's address, so pods reach it
as the `kubernetes` Service and the host reaches it through .testbed/kubeconfig without nsenter. Inside the
mount namespace /run is a private tmpfs, /var/log is the bed's own directory, and the three sysctls
the kubelet insists on (protectKernelDefaults) are masked with the values it wants (the host's stay).
Stopping kills every process of both namespaces and of the node's cgroup tree, removes that tree, and lets
the namespaces (with the veth pair, bridges, iptables rules and mounts in them) die with the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.testbed import cluster, provisioner, state
from tests.testbed.cluster import BIN_DIR, REPO, Placement, Testbed
from tests.testbed.pki import NODE_NAME
from tests.testbed.processes import Process, TestbedError, alive, spawn, stop, wait_for

# The one real-node bed of this checkout (one at a time: the veth addresses are fixed).
DIRECTORY = cluster.ROOT / "realnode"
STATE_KEY = "realnode"
NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "kube-router",
)
# Host tools the node needs (Debian: runc, iptables, containernetworking-plugins, iproute2, util-linux).
HOST_TOOLS = ("runc", "iptables", "ipset", "ip", "unshare", "nsenter")
CNI_BIN_DIR = Path("/usr/lib/cni")
# Per checkout (a CI clone may run beside a developer's bed): interface name, /30 and cgroup root from a
# hash of the bed's directory.
_SLOT = int(hashlib.sha256(str(DIRECTORY).encode()).hexdigest(), 16) % 16000
HOST_INTERFACE = f"phlobed{_SLOT}"
HOST_ADDRESS = f"172.{16 + _SLOT // 1000}.{(_SLOT % 1000) // 4}.{(_SLOT % 4) * 64 + 1}"
NODE_ADDRESS = f"172.{16 + _SLOT // 1000}.{(_SLOT % 1000) // 4}.{(_SLOT % 4) * 64 + 2}"
PREFIX = 30
POD_CIDR = "10.88.0.0/16"
POD_SUBNET = "10.88.0.0/24"
DNS_ADDRESS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "standard"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
# What the kubelet checks with protectKernelDefaults (masked inside the mount namespace only).
KERNEL_DEFAULTS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
CGROUP_ROOT = f"/phlo-testbed-{_SLOT}"
CGROUP_FS = Path("/sys/fs/cgroup")


@dataclass
class RealNode:
    """A running real-node bed: its control plane (a Testbed) plus the node's processes and namespaces."""

    bed: Testbed
    holder: Process
    mnt_ns: str
    net_ns: str
    processes: list[Process] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.bed.directory

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd" / "containerd.sock"

    def nsenter(self) -> list[str]:
        """argv prefix that runs a command inside the node's network and mount namespaces."""
        return ["nsenter", f"--target={self.holder.pid}", "--net", "--mount", "--"]

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The node's ctr against its containerd, in the Kubernetes namespace."""
        argv = [str(BIN_DIR / "ctr"), f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def alive(self) -> bool:
        return alive(self.holder) and all(alive(p) for p in self.processes) and self.bed.alive()

    def to_json(self) -> dict[str, Any]:
        return {
            "bed": self.bed.to_json(),
            "holder": self.holder.to_json(),
            "mnt_ns": self.mnt_ns,
            "net_ns": self.net_ns,
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RealNode:
        return cls(
            bed=Testbed.from_json(data["bed"]),
            holder=Process.from_json(data["holder"]),
            mnt_ns=data["mnt_ns"],
            net_ns=data["net_ns"],
            processes=[Process.from_json(p) for p in data["processes"]],
        )


# --- preflight ----------------------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this host lacks for a real node (binaries to build, Debian packages to install, privileges)."""
    missing = [f".testbed/bin/{n}" for n in NODE_BINARIES if not os.access(BIN_DIR / n, os.X_OK)]
    missing += [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    missing += [
        f"{CNI_BIN_DIR}/{p}"
        for p in ("bridge", "host-local", "portmap", "loopback")
        if not (CNI_BIN_DIR / p).exists()
    ]
    if os.geteuid() != 0:
        missing.append("root (namespaces, mounts and cgroups need it)")
    return missing


# --- namespaces ----------------------------------------------------------------------------------------


def _run(argv: list[str], what: str, timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise TestbedError(f"{what}: {' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def _ns_id(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _mount_setup_script(directory: Path) -> str:
    """Shell run once inside the new mount namespace: a private /run, the bed's /var/log, masks."""
    masks = directory / "sysctl-masks"
    lines = [
        "set -eu",
        "mount -t tmpfs -o mode=755 phlo-run /run",
        f"mount --bind {directory / 'var-log'} /var/log",
    ]
    for key in KERNEL_DEFAULTS:
        lines.append(f"mount --bind {masks / key.replace('/', '.')} /proc/sys/{key}")
    return "\n".join(lines)


def _start_namespaces(directory: Path) -> tuple[Process, str, str]:
    logs = directory / "logs"
    (directory / "var-log").mkdir(parents=True, exist_ok=True)
    masks = directory / "sysctl-masks"
    masks.mkdir(parents=True, exist_ok=True)
    for key, value in KERNEL_DEFAULTS.items():
        (masks / key.replace("/", ".")).write_text(value + "\n")
    # A leftover host interface of a bed that died without teardown would clash with the new one.
    subprocess.run(["ip", "link", "delete", HOST_INTERFACE], capture_output=True, check=False)
    holder = spawn(
        "namespaces",
        ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
        logs / "namespaces.log",
        executable="sleep",
    )
    wait_for(
        "the node's namespaces", lambda: _ns_id(holder.pid, "net") != _ns_id(os.getpid(), "net"), 10, [holder]
    )
    pid = str(holder.pid)
    enter = ["nsenter", f"--target={pid}", "--net", "--mount", "--"]
    _run([*enter, "sh", "-c", _mount_setup_script(directory)], "mount namespace set-up")
    _run(
        ["ip", "link", "add", HOST_INTERFACE, "type", "veth", "peer", "name", "eth0", "netns", pid],
        "veth pair",
    )
    _run(["ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", HOST_INTERFACE], "host address")
    _run(["ip", "link", "set", HOST_INTERFACE, "up"], "host interface up")
    inside = [
        "ip link set lo up",
        f"ip addr add {NODE_ADDRESS}/{PREFIX} dev eth0",
        "ip link set eth0 up",
        # Node-local clients (kubelet probes, CoreDNS) reach ClusterIPs through kube-proxy's OUTPUT rules.
        f"ip route add {cluster.SERVICE_CIDR} dev eth0",
        "sysctl -qw net.ipv4.ip_forward=1",
        "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
    ]
    _run([*enter, "sh", "-c", " && ".join(inside)], "node network set-up")
    return holder, _ns_id(holder.pid, "mnt"), _ns_id(holder.pid, "net")


# --- configuration files ---------------------------------------------------------------------------------


def _containerd_config(directory: Path) -> str:
    root = directory / "containerd"
    return f"""version = 3
root = "{root / "root"}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{root / "containerd.sock"}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  # Per-registry hosts.toml files (tests/testbed/registry.py writes the private registry's).
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{root / "certs.d"}"

[plugins."io.containerd.cri.v1.runtime"]
  # No CAP_SYS_RESOURCE here: an oom_score_adj below containerd's own would fail every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{directory / "cni"}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc") or "runc"}"
        SystemdCgroup = false
"""


def _cni_config(directory: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "phlo-testbed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(directory / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(directory: Path, bed: Testbed) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This host has cgroup v1 only and no systemd as PID 1.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": CGROUP_ROOT,
        "protectKernelDefaults": True,
        "address": NODE_ADDRESS,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(bed.ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_ADDRESS],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "containerRuntimeEndpoint": f"unix://{directory / 'containerd' / 'containerd.sock'}",
        "failSwapOn": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "maxPods": 110,
        "podLogsDir": "/var/log/pods",
        "staticPodPath": "",
        "registerNode": True,
    }


def _kube_proxy_config(directory: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(directory / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_ADDRESS,
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0: leave the host-wide conntrack table sizes alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
    }


def _corefile(directory: Path) -> str:
    return f""".:53 {{
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {directory / "coredns.kubeconfig"}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loadbalance
}}
"""


def _cluster_objects() -> list[dict[str, Any]]:
    """What a node's add-ons would install: CoreDNS's Service, endpoints and read access; the StorageClass."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {"clusterIP": DNS_ADDRESS, "ports": [dict(p, targetPort=53) for p in ports]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-node",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": "testbed.phlo.dev",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_ADDRESS], "conditions": {"ready": True}}],
            "ports": ports,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "phlo-testbed:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "phlo-testbed:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "phlo-testbed:coredns",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "phlo-testbed-coredns"}
            ],
        },
    ]


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _kubeconfig(bed: Testbed, stem: str, name: str) -> Path:
    from tests.testbed.pki import Pki

    pki = Pki(bed.directory / "pki")
    text = cluster.render_kubeconfig(
        bed.server, bed.ca_file.read_bytes(), cluster.client_cert_user(pki, stem)
    )
    return _write(bed.directory / f"{name}.kubeconfig", text, 0o600)


# --- lifecycle -----------------------------------------------------------------------------------------


def _node_ready(bed: Testbed) -> bool:
    out = bed.kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=10)
    if out.returncode != 0:
        return False
    conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def _inside_ok(node_enter: list[str], url: str) -> bool:
    """GET url from inside the node's network namespace (its loopback is not the host's)."""
    code = f"import urllib.request as u, sys; sys.exit(u.urlopen({url!r}, timeout=2).status != 200)"
    return (
        subprocess.run(
            [*node_enter, sys.executable, "-c", code], capture_output=True, check=False, timeout=10
        ).returncode
        == 0
    )


def start(directory: Path = DIRECTORY) -> RealNode:
    """Start the namespaces, the control plane inside them, then containerd, kubelet, kube-proxy, CoreDNS."""
    missing = missing_prerequisites()
    if missing:
        raise TestbedError(
            "the real node cannot start; missing: "
            + ", ".join(missing)
            + " (run `bash tests/testbed/build.sh`; Debian: runc iptables containernetworking-plugins)"
        )
    started = time.monotonic()
    for stale in ("containerd", "kubelet", "cni-ipam", "var-log", "cni", "etcd-data"):
        shutil.rmtree(directory / stale, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    logs = directory / "logs"
    holder, mnt_ns, net_ns = _start_namespaces(directory)
    node = RealNode(bed=None, holder=holder, mnt_ns=mnt_ns, net_ns=net_ns)  # type: ignore[arg-type]
    try:
        placement = Placement(
            address=NODE_ADDRESS,
            wrap=tuple(node.nsenter()),
            taint_fake_nodes=True,
            extra_args={
                "kube-apiserver": (
                    f"--kubelet-client-certificate={directory / 'pki' / 'apiserver-kubelet-client.crt'}",
                    f"--kubelet-client-key={directory / 'pki' / 'apiserver-kubelet-client.key'}",
                    "--kubelet-preferred-address-types=InternalIP",
                ),
            },
        )
        node.bed = cluster._start_once(directory, BIN_DIR, placement)
        bed = node.bed
        _write(directory / "containerd" / "config.toml", _containerd_config(directory))
        _write(directory / "cni" / "10-phlo-testbed.conflist", json.dumps(_cni_config(directory), indent=2))
        (directory / "cni-ipam").mkdir(parents=True, exist_ok=True)
        enter = node.nsenter()
        node.processes.append(
            spawn(
                "containerd",
                [*enter, str(BIN_DIR / "containerd"), f"--config={directory / 'containerd' / 'config.toml'}"],
                logs / "containerd.log",
                env={**os.environ, "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"},
                executable="containerd",
            )
        )
        wait_for("containerd", lambda: node.ctr("version", timeout=5).returncode == 0, 60, node.processes)
        try:
            load_images(node)
        except TestbedError as error:  # the node is still useful; `make images` loads them later
            print(f"realnode: warning: {error}", file=sys.stderr)

        _make_cgroup_root()
        kubelet_kubeconfig = _kubeconfig(bed, "kubelet", "kubelet")
        kubelet_config = _write(
            directory / "kubelet-config.json", json.dumps(_kubelet_config(directory, bed), indent=2)
        )
        node.processes.append(
            spawn(
                "kubelet",
                [
                    *enter,
                    str(BIN_DIR / "kubelet"),
                    f"--config={kubelet_config}",
                    f"--kubeconfig={kubelet_kubeconfig}",
                    f"--root-dir={directory / 'kubelet'}",
                    f"--cert-dir={directory / 'kubelet' / 'pki'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_ADDRESS}",
                    "--v=1",
                ],
                logs / "kubelet.log",
                executable="kubelet",
            )
        )
        wait_for(f"node {NODE_NAME} Ready", lambda: _node_ready(bed), 180, [*node.processes, *bed.processes])

        _kubeconfig(bed, "kube-proxy", "kube-proxy")
        proxy_config = _write(
            directory / "kube-proxy-config.json", json.dumps(_kube_proxy_config(directory), indent=2)
        )
        node.processes.append(
            spawn(
                "kube-proxy",
                [*enter, str(BIN_DIR / "kube-proxy"), f"--config={proxy_config}", "--v=1"],
                logs / "kube-proxy.log",
                executable="kube-proxy",
            )
        )
        wait_for(
            "kube-proxy /healthz",
            lambda: _inside_ok(enter, "http://127.0.0.1:10256/healthz"),
            60,
            node.processes,
        )

        bed.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": _cluster_objects()}),
        )
        _kubeconfig(bed, "coredns", "coredns")
        corefile = _write(directory / "Corefile", _corefile(directory))
        node.processes.append(
            spawn(
                "coredns",
                [*enter, str(BIN_DIR / "coredns"), "-conf", str(corefile)],
                logs / "coredns.log",
                executable="coredns",
            )
        )
        wait_for(
            "CoreDNS ready", lambda: _inside_ok(enter, "http://127.0.0.1:18181/ready"), 60, node.processes
        )
        # NetworkPolicy enforced for real: kube-router's policy controller only (routing and Services stay
        # with the bridge plugin and kube-proxy), iptables and ipset rules inside the node's namespace.
        _kubeconfig(bed, "kube-router", "kube-router")
        node.processes.append(
            spawn(
                "kube-router",
                [
                    *enter,
                    str(BIN_DIR / "kube-router"),
                    f"--kubeconfig={directory / 'kube-router.kubeconfig'}",
                    f"--hostname-override={NODE_NAME}",
                    "--run-firewall=true",
                    "--run-router=false",
                    "--run-service-proxy=false",
                    "--enable-cni=false",
                    "--enable-ipv6=false",
                    f"--service-cluster-ip-range={cluster.SERVICE_CIDR}",
                    "--health-port=20244",
                    "--iptables-sync-period=1m",
                    "--v=1",
                ],
                logs / "kube-router.log",
                executable="kube-router",
            )
        )
        wait_for(
            "kube-router /healthz",
            lambda: _inside_ok(enter, "http://127.0.0.1:20244/healthz"),
            60,
            node.processes,
        )
        _apply_storage_class(bed)
        node.processes.append(
            spawn(
                "provisioner",
                [
                    sys.executable,
                    "-m",
                    "tests.testbed.provisioner",
                    f"--kubeconfig={bed.kubeconfig}",
                    f"--root={directory / 'volumes'}",
                    f"--node={NODE_NAME}",
                ],
                logs / "provisioner.log",
                cwd=REPO,
                executable="tests.testbed.provisioner",
            )
        )
    except BaseException:
        stop_node(node)
        raise
    state.update(directory, STATE_KEY, node.to_json())
    _write(cluster.ROOT / "kubeconfig", bed.kubeconfig.read_text(), 0o600)
    print(
        f"realnode: node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s (API server {bed.server})",
        file=sys.stderr,
    )
    return node


def _apply_storage_class(bed: Testbed) -> None:
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": provisioner.PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    bed.kubectl("apply", "-f", "-", input=json.dumps(storage_class))


def load_images(node: RealNode) -> list[str]:
    """Import every image `make images` indexed (.testbed/images/index.json) into the node's containerd,
    skipping those already there at the same digest; the names imported."""
    from tests.images import build as images

    if not images.INDEX.exists():
        return []
    try:
        return images.load(str(BIN_DIR / "ctr"), str(node.containerd_socket))
    except (RuntimeError, subprocess.CalledProcessError) as error:
        raise TestbedError(f"loading the images of {images.INDEX} into the node failed: {error}") from error


def _canonical(name: str) -> str:
    """docker.io/library/ prefix the way containerd stores short names."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


# --- teardown ------------------------------------------------------------------------------------------


def _pids_in_namespace(ns_id: str, kind: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / kind) == ns_id:
                pids.append(int(entry.name))
    return pids


def _cgroup_dirs() -> list[Path]:
    """Every cgroup directory of the node's tree in every v1 hierarchy (and v2 if mounted), deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_FS.iterdir() if CGROUP_FS.is_dir() else ():
        root = hierarchy / CGROUP_ROOT.lstrip("/")
        if root.is_dir():
            found.extend(p for p in root.rglob("*") if p.is_dir())
            found.append(root)
    # kubelet puts its own cgroups (kubepods) under cgroupRoot too; deepest first so rmdir succeeds.
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _make_cgroup_root() -> None:
    """The kubelet's cgroupRoot must exist in every v1 hierarchy; cpuset needs its cpus and mems set."""
    for hierarchy in CGROUP_FS.iterdir() if CGROUP_FS.is_dir() else ():
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue
        root = hierarchy / CGROUP_ROOT.lstrip("/")
        root.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (root / knob).exists() and not (root / knob).read_text().strip():
                (root / knob).write_text((hierarchy / knob).read_text())


def _kill_until_gone(find: Callable[[], set[int]], rounds: int, pause: float) -> None:
    """SIGKILL what find() reports until it reports nothing (or rounds run out)."""
    for _ in range(rounds):
        pids = find()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(pause)


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def _kill_cgroup_tree() -> None:
    _kill_until_gone(_cgroup_pids, 50, 0.1)
    for _ in range(50):
        for directory in _cgroup_dirs():
            with contextlib.suppress(OSError):
                directory.rmdir()
        if not _cgroup_dirs():
            return
        time.sleep(0.1)


def stop_node(node: RealNode) -> None:
    """Stop the node and its control plane; kill what is left in its namespaces and cgroups; remove state."""
    for process in reversed(node.processes):
        stop(process, grace=10)
    _kill_cgroup_tree()
    if node.bed is not None:
        node.bed.stop()

    def in_namespaces() -> set[int]:
        found = {*_pids_in_namespace(node.mnt_ns, "mnt"), *_pids_in_namespace(node.net_ns, "net")}
        return found - {node.holder.pid, os.getpid()}

    _kill_until_gone(in_namespaces, 3, 0.2)
    stop(node.holder, grace=2)
    _kill_cgroup_tree()
    subprocess.run(["ip", "link", "delete", HOST_INTERFACE], capture_output=True, check=False)
    # Snapshots and pod volumes are plain directories once the mount namespace is gone.
    for stale in ("containerd", "kubelet", "cni-ipam", "etcd-data", "volumes"):
        shutil.rmtree(node.directory / stale, ignore_errors=True)


def attach(directory: Path = DIRECTORY) -> RealNode | None:
    data = state.read(directory).get(STATE_KEY)
    if not data:
        return None
    node = RealNode.from_json(data)
    return node if node.alive() else None


def stop_recorded(directory: Path = DIRECTORY) -> bool:
    data = state.read(directory).get(STATE_KEY)
    if not data:
        return False
    stop_node(RealNode.from_json(data))
    state.update(directory, STATE_KEY, None)
    kubeconfig = cluster.ROOT / "kubeconfig"
    with contextlib.suppress(OSError):
        if kubeconfig.read_text() == (directory / "kubeconfig").read_text():
            kubeconfig.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed.realnode", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["up", "down", "status", "load-images"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            node = attach()
            if node is None:
                stop_recorded()
                node = start()
            else:
                load_images(node)
                print("realnode: already running", file=sys.stderr)
            print(
                f"realnode: logs in {node.directory / 'logs'}; stop with `make realnode-down`",
                file=sys.stderr,
            )
            print(
                f"realnode: kubectl and helm work from the host: export KUBECONFIG={cluster.ROOT}/kubeconfig",
                file=sys.stderr,
            )
            print(f"export KUBECONFIG={cluster.ROOT / 'kubeconfig'}")
        elif args.command == "down":
            print("realnode: " + ("stopped" if stop_recorded() else "nothing recorded"), file=sys.stderr)
        elif args.command == "load-images":
            node = attach()
            if node is None:
                print("realnode: not running", file=sys.stderr)
                return 1
            print("realnode: loaded " + (", ".join(load_images(node)) or "nothing new"), file=sys.stderr)
        else:
            node = attach()
            print(f"realnode: {'running at ' + node.bed.server if node else 'not running'}")
            return 0 if node else 1
    except TestbedError as error:
        print(f"realnode: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def host_snapshot() -> dict[str, Any]:
    """What the real node must leave as it found it on the host: interfaces, mounts, iptables rules,
    the sysctls the node sets inside its namespaces, its cgroup tree and its processes."""
    sysctls = {}
    for key in (*KERNEL_DEFAULTS, "net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
        with contextlib.suppress(OSError):
            sysctls[key] = Path("/proc/sys", key).read_text().strip()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    names = set(NODE_BINARIES) | {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    processes = []
    mine = str(DIRECTORY).encode()  # another checkout's bed may run beside this one
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in names:
                if mine in (entry / "cmdline").read_bytes():
                    processes.append((entry / "comm").read_text().strip())
    return {
        "links": sorted(
            name
            for line in links.splitlines()
            if ":" in line and (name := line.split(":", 2)[1].split("@")[0].strip()) == HOST_INTERFACE
        ),
        "mounts": sorted(" ".join(m.split()[3:5]) for m in mounts if str(DIRECTORY) in m),
        "iptables": sorted(
            r for r in rules.splitlines() if r and not r.startswith("#") and not r.startswith(":")
        ),
        "sysctls": sysctls,
        "cgroups": [str(p) for p in _cgroup_dirs()],
        "processes": sorted(processes),
    }
