"""spec.ingress and spec.httpRoute: an Ingress and a Gateway API HTTPRoute to the webserver Service, under
webserver.pathPrefix; the HTTPRoute only where its API exists; Warnings for a missing Gateway API and for a UI
exposed without authentication."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, exposure, render_all
from phlo_operator.render.bundle import Facts

from tests.unit.test_reconcile import NAME, NS, Bed

pytestmark = pytest.mark.unit
ROUTE = {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}]}


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def kinds(w: Workflow, facts: Facts | None = None) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_all(w, facts).objects}


def absent_kinds(w: Workflow, facts: Facts | None = None) -> set[str]:
    return {kind for (_, kind, _, _) in render_all(w, facts).absent}


def test_an_ingress_routes_the_path_prefix_to_the_webserver_service() -> None:
    w = wf(
        webserver={"pathPrefix": "/dagster"},
        ingress={
            "enabled": True,
            "className": "nginx",
            "host": "dagster.example.com",
            "tls": {"secretName": "dagster-tls"},
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        },
    )
    ing = kinds(w)["Ingress"]
    assert ing["apiVersion"] == "networking.k8s.io/v1"
    assert ing["metadata"]["name"] == "demo-webserver"
    assert ing["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert ing["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"secretName": "dagster-tls", "hosts": ["dagster.example.com"]}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "dagster.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/dagster",
            "pathType": "Prefix",
            "backend": {"service": {"name": "demo-webserver", "port": {"name": "http"}}},
        }
    ]
    assert "Ingress" not in absent_kinds(w)


def test_a_minimal_ingress_matches_every_host_at_the_root() -> None:
    ing = kinds(wf(ingress={"enabled": True}))["Ingress"]
    assert ing["spec"] == {
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "demo-webserver", "port": {"name": "http"}}},
                        }
                    ]
                }
            }
        ]
    }
    assert "annotations" not in ing["metadata"]


def test_without_ingress_enabled_none_is_rendered_and_an_old_one_is_deleted() -> None:
    w = wf(ingress={"enabled": False, "host": "dagster.example.com"})
    assert "Ingress" not in kinds(w)
    assert ("networking.k8s.io/v1", "Ingress", "team", "demo-webserver") in render_all(w).absent


def test_an_http_route_only_where_the_gateway_api_exists() -> None:
    w = wf(
        webserver={"pathPrefix": "/dagster", "port": 8080},
        httpRoute={**ROUTE, "hostnames": ["d.example.com"]},
    )
    assert "HTTPRoute" not in kinds(w)
    assert "HTTPRoute" not in absent_kinds(w)  # nothing to delete through an API that is not there
    route = kinds(w, Facts(http_route_api=True))["HTTPRoute"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "demo-webserver"
    assert route["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["d.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/dagster"}}],
                "backendRefs": [{"name": "demo-webserver", "port": 8080}],
            }
        ],
    }
    off = wf(httpRoute={**ROUTE, "enabled": False})
    assert "HTTPRoute" in absent_kinds(off, Facts(http_route_api=True))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"httpRoute": {"enabled": True}}, "spec.httpRoute: httpRoute.enabled needs at least one parentRefs"),
        ({"ingress": {"enabled": True, "host": "Dagster.Example.com"}}, "spec.ingress.host"),
        ({"ingress": {"tls": {"secretName": "not_a_name"}}}, "spec.ingress.tls.secretName"),
        ({"ingress": {"annotations": {"bad key!": "x"}}}, "spec.ingress.annotations"),
        ({"httpRoute": {"hostnames": ["*.ok.example.com", "no spaces"]}}, "spec.httpRoute.hostnames.1"),
        (
            {"httpRoute": {**ROUTE, "parentRefs": [{"name": "gw", "port": 0}]}},
            "spec.httpRoute.parentRefs.0.port",
        ),
    ],
)
def test_bad_exposure_settings_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec, match=field.replace("*", r"\*")):
        wf(**spec)


@pytest.mark.parametrize(
    "parents",
    [
        [{"name": "gw"}, {"name": "gw"}],
        [{"name": "gw", "sectionName": "https"}, {"name": "gw", "sectionName": "https"}],
        [{"name": "gw", "sectionName": "https"}, {"name": "gw"}],
        [{"name": "gw", "port": 443}, {"name": "gw", "sectionName": "https"}],
        [{"name": "gw", "kind": "Gateway"}, {"name": "gw", "group": "gateway.networking.k8s.io"}],
    ],
)
def test_two_entries_for_one_gateway_must_name_different_listeners(parents: list[dict[str, Any]]) -> None:
    """The Gateway API's HTTPRoute CRD refuses these (the render dry-run test against it found the first)."""
    with pytest.raises(InvalidSpec, match=r"entries naming the same parent .* \(parent gw\)"):
        wf(httpRoute={"enabled": True, "parentRefs": parents})


@pytest.mark.parametrize(
    "parents",
    [
        [{"name": "gw", "sectionName": "https"}, {"name": "gw", "sectionName": "http"}],
        [{"name": "gw", "port": 443}, {"name": "gw", "port": 80}],
        [{"name": "gw"}, {"name": "gw", "namespace": "edge"}],
        [{"name": "gw"}, {"name": "gw", "kind": "ListenerSet"}],
    ],
)
def test_entries_for_distinct_listeners_or_parents_are_accepted(parents: list[dict[str, Any]]) -> None:
    w = wf(httpRoute={"enabled": True, "parentRefs": parents})
    route = kinds(w, Facts(http_route_api=True))["HTTPRoute"]
    assert len(route["spec"]["parentRefs"]) == 2


def test_a_wildcard_host_is_accepted() -> None:
    assert kinds(wf(ingress={"enabled": True, "host": "*.example.com"}))["Ingress"]["spec"]["rules"][0][
        "host"
    ]


def test_exposed_lists_what_reaches_the_ui() -> None:
    both = wf(ingress={"enabled": True}, httpRoute=ROUTE)
    assert exposure.exposed(both, True) == ["Ingress", "HTTPRoute"]
    assert exposure.exposed(both, False) == ["Ingress"]
    assert exposure.exposed(wf(), True) == []


def test_a_missing_gateway_api_is_one_warning_and_recorded_in_status() -> None:
    bed = Bed(dbt={"enabled": False}, httpRoute=ROUTE)
    bed.run()
    bed.run()
    assert bed.kube.reasons().count("HTTPRouteUnavailable") == 1
    assert bed.status()["exposure"]["httpRoute"] == "CRDMissing"
    assert bed.kube.kind("HTTPRoute") == []
    bed.kube.apis.add("gateway.networking.k8s.io/v1/httproutes")
    bed.run()
    assert bed.status()["exposure"]["httpRoute"] == "Applied"
    assert [o["metadata"]["name"] for o in bed.kube.kind("HTTPRoute")] == [f"{NAME}-webserver"]
    bed.patch_spec(httpRoute=None)
    bed.run()
    assert bed.kube.kind("HTTPRoute") == []
    assert bed.status()["exposure"]["httpRoute"] == "Disabled"


def test_an_unauthenticated_exposure_warns_once_and_status_says_so() -> None:
    bed = Bed(dbt={"enabled": False}, ingress={"enabled": True})
    bed.run()
    bed.run()
    assert bed.kube.reasons().count("ExposedWithoutAuthentication") == 1
    assert bed.status()["exposure"]["unauthenticated"] is True
    assert [o["metadata"]["namespace"] for o in bed.kube.kind("Ingress")] == [NS]
    bed.patch_spec(ingress=None)
    bed.run()
    assert bed.kube.kind("Ingress") == []
    assert bed.status()["exposure"]["unauthenticated"] is False


def test_nothing_exposed_posts_no_warning() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.run()
    assert "ExposedWithoutAuthentication" not in bed.kube.reasons()
    assert bed.status()["exposure"] == {"httpRoute": "Disabled", "unauthenticated": False}
