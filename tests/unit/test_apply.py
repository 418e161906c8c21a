"""The live-vs-desired comparison that lets an unchanged workflow cost zero writes."""

from __future__ import annotations

import pytest
from phlo_operator.apply import contains, path

pytestmark = pytest.mark.unit


def test_live_with_server_defaults_contains_desired() -> None:
    desired = {
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": {}}, "spec": {"volumes": []}}}
    }
    live = {"spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"spec": {"dnsPolicy": "x"}}}}
    assert contains(live, desired)


@pytest.mark.parametrize(
    "live",
    [
        {"spec": {"replicas": 2}},
        {"spec": {}},
        {"spec": {"replicas": 1, "ports": [{"port": 1}, {"port": 2}]}},
        {"spec": {"replicas": 1, "ports": [{"port": 9}]}},
    ],
)
def test_any_difference_in_what_we_send_is_a_change(live: dict) -> None:
    assert not contains(live, {"spec": {"replicas": 1, "ports": [{"port": 1}]}})


def test_int_or_string_and_paths() -> None:
    assert contains({"port": "4000"}, {"port": 4000})
    assert not contains({"flag": 1}, {"flag": True})
    assert path("apps/v1", "Deployment", "ns", "d") == "/apis/apps/v1/namespaces/ns/deployments/d"
    assert path("v1", "ConfigMap", "ns") == "/api/v1/namespaces/ns/configmaps"
