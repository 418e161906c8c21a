"""What the operator and chart tests share to run the operator on the bed: free ports, stand-in CRDs."""

from __future__ import annotations

import socket
from typing import Any

# The resources the operator reads and writes (apiserver_request_total's resource label), besides Events.
OUR_RESOURCES = {
    "configmaps",
    "secrets",
    "services",
    "serviceaccounts",
    "deployments",
    "statefulsets",
    "jobs",
    "roles",
    "rolebindings",
    "networkpolicies",
    "poddisruptionbudgets",
    "phloworkflows",
    "persistentvolumeclaims",
    "horizontalpodautoscalers",
    "ingresses",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def monitoring_crd(kind: str, plural: str) -> dict[str, Any]:
    """A minimal stand-in for a Prometheus Operator CRD: the kind exists, its content is not checked."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
