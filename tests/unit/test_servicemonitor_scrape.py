"""tests/e2e/servicemonitor.py: the ServiceMonitor -> scrape configuration translation of the real-node test.

Mutation (2026-12-06): with the `port` keep removed from scrape_configs, test_port_and_selector_become_keeps
failed (no keep on __meta_kubernetes_endpointslice_port_name)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import servicemonitor as sm

pytestmark = pytest.mark.unit


def monitor(**spec: Any) -> dict[str, Any]:
    base = {
        "selector": {"matchLabels": {"app.kubernetes.io/instance": "quickstart"}},
        "namespaceSelector": {"matchNames": ["shop"]},
        "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
    }
    return {"metadata": {"namespace": "shop", "name": "quickstart-webserver"}, "spec": {**base, **spec}}


def test_port_and_selector_become_keeps() -> None:
    (job,) = sm.scrape_configs([monitor()])
    assert job["job_name"] == "serviceMonitor/shop/quickstart-webserver/0"
    assert job["kubernetes_sd_configs"] == [{"role": "endpointslice", "namespaces": {"names": ["shop"]}}]
    assert job["scrape_interval"] == "15s" and job["metrics_path"] == "/metrics"
    keeps = {
        tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"
    }
    assert keeps == {
        (
            "__meta_kubernetes_service_label_app_kubernetes_io_instance",
            "__meta_kubernetes_service_labelpresent_app_kubernetes_io_instance",
        ): "(quickstart);true",
        ("__meta_kubernetes_endpointslice_port_name",): "metrics",
    }


def test_a_field_it_cannot_express_is_refused_by_name() -> None:
    with pytest.raises(
        sm.ServiceMonitorError, match=r"shop/quickstart-webserver: spec.endpoints\[0\].tlsConfig"
    ):
        sm.scrape_configs([monitor(endpoints=[{"port": "metrics", "tlsConfig": {}}])])
    with pytest.raises(sm.ServiceMonitorError, match=r"spec\.targetLabels"):
        sm.scrape_configs([monitor(targetLabels=["team"])])


def test_discover_gives_each_address_and_port_its_labels() -> None:
    objects = [
        {
            "kind": "Service",
            "metadata": {"namespace": "shop", "name": "web", "labels": {"app.kubernetes.io/instance": "q"}},
        },
        {
            "kind": "Pod",
            "metadata": {"namespace": "shop", "name": "web-1"},
            "spec": {
                "containers": [{"name": "webserver", "ports": [{"name": "http", "containerPort": 3000}]}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.5"},
        },
        {
            "kind": "EndpointSlice",
            "metadata": {
                "namespace": "shop",
                "name": "web-x",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "ports": [{"name": "http", "port": 3000}, {"name": "metrics", "port": 3000}],
            "endpoints": [
                {
                    "addresses": ["10.0.0.5"],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": "web-1"},
                }
            ],
        },
        {"kind": "Service", "metadata": {"namespace": "elsewhere", "name": "web"}},
    ]
    (job,) = sm.scrape_configs([monitor()])
    groups = sm.discover(job, objects)
    assert [g["labels"]["__meta_kubernetes_endpointslice_port_name"] for g in groups] == ["http", "metrics"]
    labels = groups[1]["labels"]
    assert groups[1]["targets"] == ["10.0.0.5:3000"]
    assert labels["__meta_kubernetes_service_label_app_kubernetes_io_instance"] == "q"
    assert labels["__meta_kubernetes_pod_name"] == "web-1"
    assert labels["__meta_kubernetes_pod_container_name"] == "webserver"
    assert labels["__meta_kubernetes_endpointslice_endpoint_conditions_ready"] == "true"
