"""The kopf wiring that maps a ConfigMap or Secret back to the PhloWorkflows whose pods read it."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from phlo_operator import controller, handlers
from phlo_operator.apply import Versions
from phlo_operator.controller import Controller, Options
from phlo_operator.reconcile import Result

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = {
    "image": "img:1",
    "env": [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "b"}}},
        {"name": "C", "value": "plain"},
    ],
    "envFrom": [{"configMapRef": {"name": "more"}}, {"secretRef": {"name": "creds", "optional": True}}],
    "storage": {"postgres": {"secretName": "team-pg"}},
    "daemon": {"envFrom": [{"secretRef": {"name": "daemon-only"}}]},
}


def test_the_index_lists_every_configmap_and_secret_the_pods_read() -> None:
    index = handlers.referencing_workflows(namespace="team", name="demo", spec=SPEC)
    assert index == {
        ("team", "Secret", "api"): "demo",
        ("team", "ConfigMap", "settings"): "demo",
        ("team", "ConfigMap", "more"): "demo",
        ("team", "Secret", "creds"): "demo",
        ("team", "Secret", "team-pg"): "demo",
        ("team", "Secret", "daemon-only"): "demo",
    }
    assert handlers.referencing_workflows(namespace="team", name="bad", spec={"image": 3}) == {}


class _Recorder:
    def __init__(self) -> None:
        self.triggered: list[tuple[str, str]] = []

    def trigger(self, namespace: str, name: str, min_age: float = 0.0) -> None:
        self.triggered.append((namespace, name))


def test_an_event_on_a_referenced_object_triggers_exactly_its_workflows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(controller, "_controller", recorder)
    index = {("team", "Secret", "api"): ["demo", "other"], ("team", "ConfigMap", "api"): ["third"]}

    def event(handler: Any, name: str, namespace: str = "team") -> list[tuple[str, str]]:
        recorder.triggered.clear()
        handler(body={"metadata": {"name": name, "namespace": namespace}}, referencing_workflows=index)
        return list(recorder.triggered)

    assert event(handlers.referenced_secret_event, "api") == [("team", "demo"), ("team", "other")]
    assert event(handlers.referenced_configmap_event, "api") == [("team", "third")]
    assert event(handlers.referenced_secret_event, "unrelated") == []
    assert event(handlers.referenced_secret_event, "api", namespace="elsewhere") == []


def test_workflows_added_to_the_index_during_the_passes_do_not_break_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf updates its index on the event loop while a handler's thread runs passes. Mutation (2026-12-06):
    iterating the live store instead of a copy raised "dictionary changed size during iteration" (seen in
    the operator's log during the 100-workflow benchmark)."""
    live = {"demo": "demo"}

    class Growing(_Recorder):
        def trigger(self, namespace: str, name: str, min_age: float = 0.0) -> None:
            super().trigger(namespace, name)
            live[f"new-{len(live)}"] = f"new-{len(live)}"  # another workflow indexed meanwhile

    recorder = Growing()
    monkeypatch.setattr(controller, "_controller", recorder)
    index = {("team", "Secret", "api"): live.values()}
    handlers.referenced_secret_event(
        body={"metadata": {"name": "api", "namespace": "team"}}, referencing_workflows=index
    )
    assert recorder.triggered == [("team", "demo")]


class _Passes:
    """Stands in for the Reconciler: records the passes the controller runs."""

    def __init__(self) -> None:
        self.triggered: list[tuple[str, str]] = []

    def reconcile(self, namespace: str, name: str) -> Result:
        self.triggered.append((namespace, name))
        return Result("ok", [])


def test_a_watch_event_bringing_back_what_a_pass_already_saw_triggers_nothing() -> None:
    """Our own writes come back as watch events; each used to start a full pass of reads (issue 15: 94 passes
    for 10 workflows starting). Mutation check: with Versions.seen returning False, the echo assertions
    fail."""
    versions = Versions()
    recorder = _Passes()
    ctl = Controller(recorder, Options(), versions.seen)  # type: ignore[arg-type]
    owner = {"apiVersion": "phlo.dev/v1alpha1", "kind": "PhloWorkflow", "name": "demo"}
    written = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "demo-web",
            "namespace": "team",
            "resourceVersion": "41",
            "ownerReferences": [owner],
        },
    }
    versions.record(written)  # what our server-side apply returned
    cr = {
        "apiVersion": "phlo.dev/v1alpha1",
        "kind": "PhloWorkflow",
        "metadata": {"name": "demo", "namespace": "team"},
    }
    versions.record({**cr, "metadata": {**cr["metadata"], "resourceVersion": "7"}})  # our status patch
    ctl.child_delay = 0.01
    controller.install(ctl)

    async def events(*children: tuple[str, dict[str, Any]]) -> None:
        for type_, body in children:
            await handlers.child_event(type=type_, body=body)
        await asyncio.sleep(0.1)  # past child_delay: the pass due has been handed to the executor

    try:
        asyncio.run(events(("MODIFIED", written)))
        handlers.workflow_event(
            type="MODIFIED", body={**cr, "metadata": {**cr["metadata"], "resourceVersion": "7"}}
        )
        assert recorder.triggered == []
        # The deployment controller's status update, a spec change, a deletion: new to the operator.
        newer = {**written, "metadata": {**written["metadata"], "resourceVersion": "42"}}
        asyncio.run(events(("MODIFIED", newer)))
        handlers.workflow_event(
            type="MODIFIED", body={**cr, "metadata": {**cr["metadata"], "resourceVersion": "8"}}
        )
        asyncio.run(events(("DELETED", written)))
        assert recorder.triggered == [("team", "demo")] * 3
    finally:
        controller.install(None)  # type: ignore[arg-type]


def test_a_burst_of_child_changes_costs_one_pass() -> None:
    """A Deployment's status moves through several updates as it rolls out and a workflow's children change
    together: one pass for them all (issue 15). Mutation check: child_event calling trigger() directly, or
    trigger_soon() not skipping a key already due, gives three passes."""
    recorder = _Passes()
    ctl = Controller(recorder, Options())  # type: ignore[arg-type]
    ctl.child_delay = 0.05
    controller.install(ctl)
    owner = {"apiVersion": "phlo.dev/v1alpha1", "kind": "PhloWorkflow", "name": "demo"}

    def child(kind: str, version: str) -> dict[str, Any]:
        meta = {"name": "c", "namespace": "team", "resourceVersion": version, "ownerReferences": [owner]}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta}

    async def burst() -> None:
        for version in ("1", "2", "3"):
            await handlers.child_event(type="MODIFIED", body=child("Deployment", version))
        assert recorder.triggered == []  # not before the delay
        await asyncio.sleep(0.3)

    try:
        asyncio.run(burst())
        assert recorder.triggered == [("team", "demo")]
    finally:
        controller.install(None)  # type: ignore[arg-type]


def test_versions_remembers_objects_and_list_items_but_not_dry_runs() -> None:
    versions = Versions()
    versions.record(
        {
            "apiVersion": "v1",
            "kind": "ServiceList",
            "metadata": {"resourceVersion": "90"},
            "items": [{"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "12"}}],
        }
    )
    assert versions.seen(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "12"},
        }
    )
    assert not versions.seen(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "13"},
        }
    )
    assert not versions.seen(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "ns"}}
    )
    assert not versions.seen(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "12"},
        }
    )


def test_the_deletion_handler_holds_the_finalizer_by_itself() -> None:
    """Once a deletion stops the resync timer, kopf keeps its finalizer only for deletion handlers that
    require it: an optional one was skipped whenever the timer stopped first, and the objects in another run
    namespace were left behind (test_runs_in_another_namespace_get_rbac_and_config_there, 2026-12-06, under
    load). Mutation (2026-12-06): `optional=True` back on workflow_deleted makes this fail."""
    registry = kopf.get_default_registry()
    deletion = [h for h in registry._changing.get_all_handlers() if h.fn is handlers.workflow_deleted]
    assert len(deletion) == 1 and deletion[0].requires_finalizer


def test_an_hpa_event_reconciles_the_workflow_owning_its_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The HPA names only its Deployment: the store says which workflow owns that one."""
    from phlo_operator.store import Store

    store = Store()
    owner = {"apiVersion": "phlo.dev/v1alpha1", "kind": "PhloWorkflow", "name": "demo", "uid": "u"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo-webserver", "namespace": "team", "uid": "d", "ownerReferences": [owner]},
    }
    store.event("apps/v1", "Deployment", "team", None, deployment)
    store.listed("apps/v1", "Deployment", "team")
    soon: list[tuple[str, str]] = []

    class Soon:
        def trigger_soon(self, namespace: str, name: str) -> None:
            soon.append((namespace, name))

    ctl = Soon()
    ctl.store = store  # type: ignore[attr-defined]
    monkeypatch.setattr(controller, "_controller", ctl)

    def hpa(target: str, kind: str = "Deployment") -> None:
        body = {
            "metadata": {"name": "h", "namespace": "team"},
            "spec": {"scaleTargetRef": {"kind": kind, "name": target}},
        }
        asyncio.run(handlers.hpa_event(body=body))  # type: ignore[arg-type]

    hpa("demo-webserver")
    hpa("someone-elses")
    hpa("demo-webserver", kind="StatefulSet")
    assert soon == [("team", "demo")]
