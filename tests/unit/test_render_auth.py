"""spec.auth: oauth2-proxy as a hardened sidecar of the webserver; the Service, the Ingress and Prometheus
go through it, the operator reaches the webserver on port `direct`, which a NetworkPolicy keeps to it."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator import model as m
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, components, exposure, pods, render_all, shared

from tests.unit.test_reconcile import NAME, NS, Bed

pytestmark = pytest.mark.unit
AUTH = {
    "enabled": True,
    "secretName": "sso",
    "issuerUrl": "https://login.example.com/realms/data",
    "emailDomains": ["example.com"],
}
SSO = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "sso", "namespace": NS},
    "data": {"client-id": "aWQ=", "client-secret": "c2VjcmV0", "cookie-secret": "Y29va2ll"},
}


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def pod(w: Workflow) -> dict[str, Any]:
    return components.webserver_deployment(w, shared(w))["spec"]["template"]


def proxy(w: Workflow) -> dict[str, Any]:
    return next(c for c in pod(w)["spec"]["containers"] if c["name"] == "auth-proxy")


def test_the_proxy_is_a_hardened_sidecar_reading_secrets_by_reference() -> None:
    w = wf(auth={**AUTH, "extraArgs": ["--allowed-group=data"]}, webserver={"pathPrefix": "/dagster"})
    ctr = proxy(w)
    assert ctr["image"] == m.OAUTH2_PROXY_IMAGE and ":v" in ctr["image"]
    assert ctr["ports"] == [{"name": "auth", "containerPort": 4180, "protocol": "TCP"}]
    assert ctr["args"] == [
        "--http-address=0.0.0.0:4180",
        "--upstream=http://127.0.0.1:3000/",
        "--provider=oidc",
        "--proxy-prefix=/dagster/oauth2",
        "--ping-path=/ping",
        "--reverse-proxy=true",
        "--skip-auth-route=GET=^/metrics$",
        "--oidc-issuer-url=https://login.example.com/realms/data",
        "--email-domain=example.com",
        "--allowed-group=data",
    ]
    assert ctr["env"] == [
        {
            "name": "OAUTH2_PROXY_CLIENT_ID",
            "valueFrom": {"secretKeyRef": {"name": "sso", "key": "client-id"}},
        },
        {
            "name": "OAUTH2_PROXY_CLIENT_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "sso", "key": "client-secret"}},
        },
        {
            "name": "OAUTH2_PROXY_COOKIE_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "sso", "key": "cookie-secret"}},
        },
    ]
    assert all("value" not in e for e in ctr["env"])
    sc = ctr["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "auth"}
    assert ctr["lifecycle"] == {"preStop": {"sleep": {"seconds": pods.DRAIN_SECONDS}}}
    assert pod(w)["metadata"]["annotations"]["prometheus.io/port"] == "4180"


def test_the_service_fronts_the_proxy_and_keeps_a_direct_port_for_the_operator() -> None:
    w = wf(auth=AUTH)
    ports = {p["name"]: p for p in components.webserver_service(w)["spec"]["ports"]}
    assert ports["http"]["targetPort"] == "auth" and ports["http"]["port"] == 3000
    assert ports["metrics"]["targetPort"] == "auth"
    assert ports["direct"] == {"name": "direct", "port": 4180, "targetPort": "http", "protocol": "TCP"}
    assert w.webserver_url == "http://demo-webserver.team.svc:3000"
    assert w.operator_url == "http://demo-webserver.team.svc:4180"
    policy = next(
        o
        for o in render_all(w).objects
        if o["kind"] == "NetworkPolicy" and "webserver" in o["metadata"]["name"]
    )
    open_rule, operator_rule = policy["spec"]["ingress"]
    assert open_rule == {"ports": [{"protocol": "TCP", "port": 4180}]}
    assert operator_rule["ports"] == [{"protocol": "TCP", "port": 3000}]
    assert operator_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_without_auth_nothing_changes_and_an_old_policy_is_deleted() -> None:
    w = wf()
    assert [c["name"] for c in pod(w)["spec"]["containers"]] == ["webserver"]
    ports = components.webserver_service(w)["spec"]["ports"]
    assert {p["name"]: p["targetPort"] for p in ports} == {"http": "http", "metrics": "http"}
    assert w.operator_url == w.webserver_url
    assert ("networking.k8s.io/v1", "NetworkPolicy", "team", "demo-webserver") in render_all(w).absent
    assert not exposure.authenticated(w) and exposure.authenticated(wf(auth=AUTH))


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"enabled": True, "issuerUrl": "https://x", "emailDomains": ["*"]}, "auth.enabled needs secretName"),
        ({**AUTH, "emailDomains": []}, "at least one emailDomains"),
        ({**AUTH, "issuerUrl": None}, "auth.provider oidc needs issuerUrl"),
        (
            {**AUTH, "extraArgs": ["--cookie-secret=abc"]},
            "spec.auth.extraArgs: --cookie-secret would put a secret",
        ),
        ({**AUTH, "extraArgs": ["--upstream=http://evil/"]}, "--upstream is set by the operator"),
        ({**AUTH, "extraArgs": ["not-a-flag"]}, "spec.auth.extraArgs.0"),
        ({**AUTH, "port": 3000}, "auth.port must differ from webserver.port"),
        ({**AUTH, "port": 9090}, "auth.port must differ from metrics.port"),
    ],
)
def test_bad_auth_settings_name_the_field(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("^", r"\^")):
        wf(auth={k: v for k, v in auth.items() if v is not None})


def test_a_github_provider_needs_no_issuer() -> None:
    args = proxy(
        wf(auth={"enabled": True, "secretName": "sso", "provider": "github", "emailDomains": ["*"]})
    )["args"]
    assert "--provider=github" in args and not any(a.startswith("--oidc-issuer-url") for a in args)


def test_a_missing_auth_secret_or_key_is_named_and_its_content_rolls_only_the_webserver() -> None:
    bed = Bed(dbt={"enabled": False}, auth=AUTH, ingress={"enabled": True})
    bed.run()
    assert "spec.auth.secretName: Secret 'sso' not found" in bed.condition("Degraded")["message"]
    bed.kube.add({**SSO, "data": {"client-id": "aWQ="}})
    bed.run()
    assert "has no key client-secret, cookie-secret" in bed.condition("Degraded")["message"]
    bed.kube.add(SSO)
    bed.run()
    assert "ExposedWithoutAuthentication" not in bed.kube.reasons()
    assert bed.status()["exposure"]["unauthenticated"] is False

    def rolls(component: str) -> str:
        obj = bed.kube.get(("apps/v1", "Deployment", NS, f"{NAME}-{component}"))
        return obj["spec"]["template"]["metadata"]["annotations"].get("phlo.dev/referenced-checksum", "")

    before = {c: rolls(c) for c in ("webserver", "daemon")}
    bed.kube.add({**SSO, "data": {**SSO["data"], "cookie-secret": "b3RoZXI="}})
    bed.run()
    assert rolls("webserver") != before["webserver"] and rolls("daemon") == before["daemon"]
