"""The kopf wiring that maps a ConfigMap or Secret back to the PhloWorkflows whose pods read it."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator import controller, handlers

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
