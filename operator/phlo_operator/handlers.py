"""kopf wiring: thin handlers that only route events to the Controller."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
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
    if controller().already_seen(body):  # e.g. our own status write coming back
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


# Mandatory (not optional=True): once deletion stops the resync timer, kopf drops its finalizer unless a
# deletion handler still needs it, and an optional handler would then never run, orphaning the objects in
# other run namespaces (seen in test_runs_in_another_namespace_get_rbac_and_config_there under load).
@kopf.on.delete(m.GROUP, m.VERSION, m.PLURAL)
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
@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels=_OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=_OWNED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "roles", labels=_OWNED)
@kopf.on.event("rbac.authorization.k8s.io", "v1", "rolebindings", labels=_OWNED)
async def child_event(type: str, body: kopf.Body, **_: Any) -> None:
    """A child changed (status, drift, deletion): re-reconcile its PhloWorkflow a moment later (one pass for
    a burst of changes), unless the event brings the very version a pass already read or wrote."""
    if type != "DELETED" and controller().already_seen(body):
        return
    for owner in body["metadata"].get("ownerReferences", []):
        if owner.get("kind") == m.KIND and owner.get("apiVersion", "").startswith(m.GROUP + "/"):
            controller().trigger_soon(body["metadata"]["namespace"], owner["name"])


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def hpa_event(body: kopf.Body, **_: Any) -> None:
    """An HPA owns its Deployment's replicas: the owning workflow's pass renders that Deployment without them.
    (Watched also so that a pass reads HPAs from the store, not with a LIST.)"""
    target = (body.get("spec") or {}).get("scaleTargetRef") or {}
    store = controller().store
    if target.get("kind") != "Deployment" or store is None:
        return
    namespace = body["metadata"]["namespace"]
    owner = store.owner_of(("apps/v1", "Deployment", namespace, str(target.get("name", ""))))
    if owner is not None:
        controller().trigger_soon(namespace, owner)


@kopf.index(m.GROUP, m.VERSION, m.PLURAL)
def referencing_workflows(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str, str], str]:
    """(namespace, kind, name) of each ConfigMap and Secret a workflow's pods read env from -> its name."""
    try:
        referenced = m.parse_spec(dict(spec)).referenced_objects()
    except m.InvalidSpec:
        return {}  # nothing of it runs: nothing to roll
    return {(namespace, kind, obj): name for kind, obj in referenced}


def _content_changed(kind: str, body: kopf.Body, index: kopf.Index[Any, str]) -> None:
    """Trigger the workflows whose pods read this object (kopf passes the index under its function's name)."""
    meta = body["metadata"]
    for workflow in _snapshot(index.get((meta["namespace"], kind, meta["name"]), [])):
        controller().trigger(meta["namespace"], workflow)


def _snapshot(values: Iterable[str]) -> list[str]:
    """A copy taken before the passes run: kopf updates its index on the event loop while this handler's
    thread triggers passes, and iterating the live store then raised "dictionary changed size"."""
    for _ in range(9):
        try:
            return list(values)
        except RuntimeError:  # changed during the copy itself: copy again
            continue
    return list(values)


@kopf.on.event("", "v1", "configmaps")
def referenced_configmap_event(body: kopf.Body, **kwargs: Any) -> None:
    """A ConfigMap the Dagster pods read env from changed: the pass rolls them (referenced-checksum)."""
    _content_changed("ConfigMap", body, kwargs["referencing_workflows"])


@kopf.on.event("", "v1", "secrets")
def referenced_secret_event(body: kopf.Body, **kwargs: Any) -> None:
    """A Secret the Dagster pods read env from changed (its content never reaches a log, Event or status)."""
    _content_changed("Secret", body, kwargs["referencing_workflows"])
