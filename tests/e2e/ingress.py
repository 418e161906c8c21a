"""An Ingress controller on the real node: Zalando's skipper (tests/testbed/gomod-skipper, built by
build.sh), run as a Deployment in a namespace of its own, watching Ingress objects of its class with its
ServiceAccount and proxying to the Services' endpoints. Its pod uses the node's network, so it listens on
NODE_ADDRESS:PORT, which this host reaches as a client outside the cluster would reach a load balancer.

The image is skipper's binary alone (tests/images/build.py `static_image`), imported into the node's
containerd under skipper's own image name; the pod is hardened like ours (non-root, read-only root
filesystem, no capabilities, RuntimeDefault seccomp). Only the node network is not "restricted": that is why
it lives outside the workflows' namespaces.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.e2e.flow import Cluster
from tests.images import build as images
from tests.testbed.cluster import BIN_DIR
from tests.testbed.realnode import NODE_ADDRESS, RealNode

NAMESPACE = "ingress-skipper"
NAME = "skipper"
CLASS = "skipper"
PORT = 9999
SUPPORT_PORT = 9911  # skipper's metrics and health listener


def image_name() -> str:
    return f"registry.opensource.zalan.do/teapot/skipper:{images._testbed_version('SKIPPER_VERSION')}"


def load_static_image(node: RealNode, binary: str, name: str, path: str) -> str:
    """The image of one bed binary (at `path`, under `name`) in the node's containerd; returns its name."""
    built = images.static_image(BIN_DIR / binary, name, path)
    images.load(str(BIN_DIR / "ctr"), str(node.containerd_socket), images=[built])
    return built.name


def manifests(image: str) -> list[dict[str, Any]]:
    """The IngressClass, the controller's RBAC (it reads Ingresses, Services, EndpointSlices), its
    Deployment."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": {"app": NAME}}
    cluster_meta = {"name": f"e2e-{NAME}", "labels": {"app": NAME}}
    read = ["get", "list", "watch"]
    args = [
        "-kubernetes",
        "-kubernetes-in-cluster",
        f"-kubernetes-ingress-class=^{CLASS}$",
        "-kubernetes-https-redirect=false",
        "-enable-kubernetes-endpointslices",
        "-proxy-preserve-host",  # the upstream sees the Host the client asked for (oauth2-proxy's redirects)
        f"-address=:{PORT}",
        f"-support-listener=:{SUPPORT_PORT}",
        "-access-log-disabled=false",
    ]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": CLASS, "labels": {"app": NAME}},
            "spec": {"controller": "zalando.org/skipper"},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": [
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["ingresses", "ingressclasses"],
                    "verbs": read,
                },
                {"apiGroups": [""], "resources": ["services", "endpoints", "namespaces"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"e2e-{NAME}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": NAME}},
                "template": {
                    "metadata": {"labels": {"app": NAME}},
                    "spec": {
                        "serviceAccountName": NAME,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": images.STATIC_UID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": NAME,
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": args,
                                "ports": [{"name": "http", "containerPort": PORT}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/metrics", "port": SUPPORT_PORT},
                                    "periodSeconds": 2,
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


def install(c: Cluster, node: RealNode) -> str:
    """skipper running on the node; returns the base URL clients outside the cluster use."""
    objects = manifests(load_static_image(node, "skipper", image_name(), "/usr/bin/skipper"))
    c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    c.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{NAME}", "--timeout=300s", timeout=330)
    return f"http://{NODE_ADDRESS}:{PORT}"


def uninstall(c: Cluster) -> None:
    for kind in ("clusterrolebinding", "clusterrole"):
        c.kubectl("delete", kind, f"e2e-{NAME}", "--ignore-not-found", check=False)
    c.kubectl("delete", "ingressclass", CLASS, "--ignore-not-found", check=False)
    c.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def status(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    """The status and body of a GET (no redirect followed unless the opener does)."""
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=30) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


def routed(url: str) -> int | None:
    """The status at url once skipper routes it (skipper answers 404 for a path no Ingress routes)."""
    try:
        code, _ = status(url)
    except (urllib.error.URLError, OSError):
        return None
    return code if code != 404 else None
