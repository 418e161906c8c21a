"""kopf wiring: thin handlers that only route events to the Controller."""

from __future__ import annotations

import os
import random
from typing import Any

import kopf

from phlo_operator import model as m
from phlo_operator.controller import controller
from phlo_operator.names import MANAGER

# Set by `phlo-dagster-operator --resync-seconds` before this module is imported.
RESYNC_ENV = "PHLO_OPERATOR_RESYNC_SECONDS"
RESYNC_SECONDS = float(os.environ.get(RESYNC_ENV, "300"))
_OWNED = {"app.kubernetes.io/managed-by": MANAGER}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    controller().configure_kopf(settings)


@kopf.on.event(m.GROUP, m.VERSION, m.PLURAL)
def workflow_event(type: str, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        controller().forget(body["metadata"]["namespace"], body["metadata"]["name"])
        return
    controller().trigger(body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.timer(
    m.GROUP,
    m.VERSION,
    m.PLURAL,
    interval=RESYNC_SECONDS,
    initial_delay=lambda **_: random.uniform(0.1, 0.5) * RESYNC_SECONDS,  # jitter: workflows spread out
)
def resync(body: kopf.Body, **_: Any) -> None:
    """Periodic level-based resync (with jitter) repairs drift that produced no watch event."""
    controller().trigger(body["metadata"]["namespace"], body["metadata"]["name"], min_age=RESYNC_SECONDS / 2)


@kopf.on.delete(m.GROUP, m.VERSION, m.PLURAL, optional=True)
def workflow_deleted(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, **_: Any) -> None:
    meta = body["metadata"]
    controller().cleanup(meta["namespace"], meta["name"], dict(spec), dict(status))


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
@kopf.on.event("apps", "v1", "statefulsets", labels=_OWNED)
@kopf.on.event("batch", "v1", "jobs", labels=_OWNED)
@kopf.on.event("", "v1", "services", labels=_OWNED)
@kopf.on.event("", "v1", "configmaps", labels=_OWNED)
@kopf.on.event("", "v1", "serviceaccounts", labels=_OWNED)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=_OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=_OWNED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "roles", labels=_OWNED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "rolebindings", labels=_OWNED)
def child_event(body: kopf.Body, **_: Any) -> None:
    """A child changed (status, drift, deletion): re-reconcile its PhloWorkflow."""
    for owner in body["metadata"].get("ownerReferences", []):
        if owner.get("kind") == m.KIND and owner.get("apiVersion", "").startswith(m.GROUP + "/"):
            controller().trigger(body["metadata"]["namespace"], owner["name"])
