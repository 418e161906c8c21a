"""PodDisruptionBudgets for replicated components and the NetworkPolicy guarding the code server."""

from __future__ import annotations

from typing import Any

from phlo_dagster import constants as c
from phlo_operator.render.workflow import Workflow
from phlo_operator.vocabulary import CODE_SERVER, DAEMON, WEBSERVER


def pod_disruption_budgets(wf: Workflow) -> list[dict[str, Any]]:
    """Only where replicas > 1: a PDB on a single pod would block node drains forever."""
    out = []
    for component, replicas in (
        (WEBSERVER, wf.spec.webserver.replicas),
        (CODE_SERVER, wf.spec.code_server.replicas),
    ):
        if replicas > 1 and not wf.spec.suspend:
            out.append(
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": wf.metadata(component, component),
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": wf.selector(component)}},
                }
            )
    return out


def code_server_network_policy(wf: Workflow) -> dict[str, Any]:
    """Only this workflow's webserver and daemon reach the code server's gRPC port. Run pods do not need it:
    a run worker (`dagster api execute_run`) loads the code from its own image (JobPythonOrigin)."""
    instance = wf.labels(CODE_SERVER)[c.LABEL_INSTANCE]
    peer: dict[str, Any] = {
        "podSelector": {
            "matchLabels": {c.LABEL_INSTANCE: instance, c.LABEL_NAME: c.APP_NAME},
            "matchExpressions": [{"key": c.LABEL_COMPONENT, "operator": "In", "values": [WEBSERVER, DAEMON]}],
        }
    }
    peers = [peer]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": wf.metadata(CODE_SERVER, CODE_SERVER),
        "spec": {
            "podSelector": {"matchLabels": wf.selector(CODE_SERVER)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": wf.spec.code_server.port}]}],
        },
    }
