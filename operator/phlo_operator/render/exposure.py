"""The webserver exposed outside the cluster: an Ingress, and a Gateway API HTTPRoute (rendered only when
its API exists). Both route webserver.pathPrefix (or /) to the webserver Service's http port."""

from __future__ import annotations

from typing import Any

from phlo_operator.render.workflow import Workflow
from phlo_operator.vocabulary import WEBSERVER

HTTP_ROUTE_API = ("gateway.networking.k8s.io/v1", "httproutes")


def exposed(wf: Workflow, http_route_api: bool) -> list[str]:
    """What makes the UI reachable from outside the cluster: the Ingress, the HTTPRoute."""
    out = ["Ingress"] if wf.spec.ingress.enabled else []
    if wf.spec.http_route.enabled and http_route_api:
        out.append("HTTPRoute")
    return out


def authenticated(wf: Workflow) -> bool:
    """Whether an authenticating proxy of the operator's stands in front of the webserver."""
    return wf.spec.auth.enabled


def _path(wf: Workflow) -> str:
    return wf.spec.webserver.path_prefix or "/"


def ingress(wf: Workflow) -> dict[str, Any]:
    settings = wf.spec.ingress
    meta = wf.metadata(WEBSERVER, WEBSERVER)
    if settings.annotations:
        meta["annotations"] = dict(settings.annotations)
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": _path(wf),
                    "pathType": "Prefix",
                    "backend": {"service": {"name": wf.webserver_service, "port": {"name": "http"}}},
                }
            ]
        }
    }
    if settings.host:
        rule["host"] = settings.host
    spec: dict[str, Any] = {"rules": [rule]}
    if settings.class_name:
        spec["ingressClassName"] = settings.class_name
    if settings.tls is not None:
        tls: dict[str, Any] = {"secretName": settings.tls.secret_name}
        if settings.host:
            tls["hosts"] = [settings.host]
        spec["tls"] = [tls]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def http_route(wf: Workflow) -> dict[str, Any]:
    settings = wf.spec.http_route
    parents = [ref.model_dump(by_alias=True, exclude_none=True) for ref in settings.parent_refs]
    spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": _path(wf)}}],
                "backendRefs": [{"name": wf.webserver_service, "port": wf.spec.webserver.port}],
            }
        ],
    }
    if settings.hostnames:
        spec["hostnames"] = list(settings.hostnames)
    return {
        "apiVersion": HTTP_ROUTE_API[0],
        "kind": "HTTPRoute",
        "metadata": wf.metadata(WEBSERVER, WEBSERVER),
        "spec": spec,
    }
