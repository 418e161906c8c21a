"""ServiceAccount, Role and RoleBinding that let the Dagster pods launch run Jobs (least privilege)."""

from __future__ import annotations

import copy
from typing import Any

from phlo_operator.rbac import RUN_LAUNCHER_RULES
from phlo_operator.render.workflow import Workflow
from phlo_operator.vocabulary import RBAC


def service_account(wf: Workflow) -> dict[str, Any] | None:
    """None when spec.serviceAccountName names an existing one. Annotations: e.g. workload identity."""
    if wf.spec.service_account_name:
        return None
    meta = wf.metadata("dagster", RBAC)
    if wf.spec.service_account.annotations:
        meta["annotations"] = dict(wf.spec.service_account.annotations)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta,
        "automountServiceAccountToken": False,
    }


def role(wf: Workflow) -> dict[str, Any]:
    """In the run namespace; owned by the CR only when that is the CR's namespace."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": wf.metadata("run-launcher", RBAC, namespace=wf.run_namespace),
        "rules": copy.deepcopy(RUN_LAUNCHER_RULES),
    }


def role_binding(wf: Workflow) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": wf.metadata("run-launcher", RBAC, namespace=wf.run_namespace),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": wf.child("run-launcher"),
        },
        "subjects": [{"kind": "ServiceAccount", "name": wf.service_account, "namespace": wf.namespace}],
    }
