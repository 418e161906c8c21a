"""PodDisruptionBudgets for replicated components and the NetworkPolicy guarding the code server."""

from __future__ import annotations

from typing import Any

from phlo_dagster import constants as c
from phlo_operator.render.workflow import Location, Workflow
from phlo_operator.vocabulary import CODE_SERVER, DAEMON, WEBSERVER, WEBSERVER_READ_ONLY


def _pdb(meta: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta,
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }


def pod_disruption_budgets(wf: Workflow) -> list[dict[str, Any]]:
    """Only where replicas > 1: a PDB on a single pod would block node drains forever. The webserver's, then
    each code location's."""
    if wf.spec.suspend:
        return []
    out = []
    if wf.spec.webserver.replicas > 1:
        out.append(_pdb(wf.metadata(WEBSERVER, WEBSERVER), wf.selector(WEBSERVER)))
    for loc in wf.locations:
        if loc.server.replicas > 1:
            out.append(_pdb(wf.location_metadata(loc), wf.location_selector(loc)))
    return out


def code_server_network_policy(wf: Workflow, loc: Location | None = None) -> dict[str, Any]:
    """Only this workflow's webserver and daemon reach a code location's gRPC port (default: the first
    location's). Run pods do not need it: a run worker (`dagster api execute_run`) loads the code from its own
    image (JobPythonOrigin)."""
    loc = loc or wf.locations[0]
    instance = wf.labels(CODE_SERVER)[c.LABEL_INSTANCE]
    readers = [WEBSERVER, DAEMON]
    if wf.spec.webserver.read_only.enabled:
        readers.append(WEBSERVER_READ_ONLY)
    peer: dict[str, Any] = {
        "podSelector": {
            "matchLabels": {c.LABEL_INSTANCE: instance, c.LABEL_NAME: c.APP_NAME},
            "matchExpressions": [{"key": c.LABEL_COMPONENT, "operator": "In", "values": readers}],
        }
    }
    peers = [peer]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": wf.location_metadata(loc),
        "spec": {
            "podSelector": {"matchLabels": wf.location_selector(loc)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": loc.server.port}]}],
        },
    }


# The operator's pods, as the chart labels them (charts/phlo-dagster/templates/_helpers.tpl).
OPERATOR_POD_LABELS = {"app.kubernetes.io/part-of": "phlo-dagster", "app.kubernetes.io/component": "operator"}


def webserver_network_policy(wf: Workflow) -> dict[str, Any]:
    """With spec.auth: the proxy's port is open (the ingress controller, the Gateway, Prometheus, users in the
    cluster: the proxy decides), the webserver's own port only to the operator's pods (its GraphQL reload and
    load checks), in any namespace. Without auth there is no policy: the webserver is open inside the cluster,
    as it always was."""
    operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": wf.metadata(WEBSERVER, WEBSERVER),
        "spec": {
            "podSelector": {"matchLabels": wf.selector(WEBSERVER)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": wf.spec.auth.port}]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": wf.spec.webserver.port}]},
            ],
        },
    }
