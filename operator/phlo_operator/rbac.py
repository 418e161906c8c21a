"""Every API verb and resource the operator uses, as PolicyRules; the chart renders its RBAC from these."""

from __future__ import annotations

from typing import Any

PolicyRule = dict[str, Any]

# What Dagster itself needs to launch and watch run Jobs (granted to the Dagster pods by a rendered Role).
RUN_LAUNCHER_RULES: list[PolicyRule] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
    # The daemon's run monitor reads the run Job's status (seen failing runs on a real node without it).
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
]

_OWN = ["get", "list", "watch", "create", "patch", "update", "delete"]
_APPLIED = ["get", "create", "patch", "delete"]

# Namespaced rules: a Role per watched (and run) namespace, or a ClusterRole for --all-namespaces.
RULES: list[PolicyRule] = [
    {
        "apiGroups": ["phlo.dev"],
        "resources": ["phloworkflows"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    },
    {"apiGroups": ["phlo.dev"], "resources": ["phloworkflows/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "services", "serviceaccounts"], "verbs": _OWN},
    # Secrets: create the generated PostgreSQL password once, read the named one to check its keys; read and
    # watch those the pods read env from (their content rolls the pods).
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": _OWN},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": _OWN},
    # Granted on to the run launcher's Role (RBAC lets the operator grant only what it holds).
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log", "pods/status"], "verbs": ["get"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": _OWN},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _OWN},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _OWN},
    # The webserver's Ingress: applied (server-side apply creates), deleted, and watched (passes read it from
    # the watch, not with a GET). The HTTPRoute: applied and deleted, never watched (its CRD may be missing).
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses"],
        "verbs": [*_APPLIED, "list", "watch"],
    },
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"], "verbs": _APPLIED},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"], "verbs": _OWN},
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": ["get", "list", "watch"],
    },
    # kopf peering (only one of several operator replicas acts).
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["kopfpeerings"],
        "verbs": ["get", "list", "watch", "patch", "create"],
    },
]

# Cluster-scoped rules (a ClusterRole in every mode): kopf's discovery and cluster peering.
CLUSTER_RULES: list[PolicyRule] = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings"],
        "verbs": ["get", "list", "watch", "patch", "create"],
    },
]
