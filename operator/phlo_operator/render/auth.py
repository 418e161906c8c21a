"""spec.auth: oauth2-proxy as a sidecar of the webserver pod. The Service's http and metrics ports reach the
proxy; the proxy passes signed-in requests (and GET /metrics) to the webserver on the pod's loopback."""

from __future__ import annotations

from typing import Any

from phlo_dagster import constants as c
from phlo_operator import model as m
from phlo_operator.render import pods
from phlo_operator.render.workflow import Workflow

CONTAINER = "auth-proxy"
PORT_NAME = "auth"


def _escape(path: str) -> str:
    return "".join("\\" + ch if ch in ".^$*+?()[]{}|\\" else ch for ch in path)


def args(wf: Workflow) -> list[str]:
    """oauth2-proxy's flags: listen on every address, every path passed unchanged to the webserver on the
    pod's loopback, the proxy's own sign-in paths under webserver.pathPrefix (so an Ingress routing the
    prefix carries them), GET /metrics without sign-in (Prometheus)."""
    auth, prefix = wf.spec.auth, wf.spec.webserver.path_prefix or ""
    out = [
        f"--http-address=0.0.0.0:{auth.port}",
        f"--upstream=http://127.0.0.1:{wf.spec.webserver.port}/",
        f"--provider={auth.provider}",
        f"--proxy-prefix={prefix}/oauth2",
        "--ping-path=/ping",
        "--reverse-proxy=true",
        f"--skip-auth-route=GET=^{_escape(c.METRICS_PATH)}$",
    ]
    if auth.issuer_url:
        out.append(f"--oidc-issuer-url={auth.issuer_url}")
    out += [f"--email-domain={domain}" for domain in auth.email_domains]
    return out + list(auth.extra_args)


def container(wf: Workflow) -> dict[str, Any]:
    """Hardened like every container (non-root, read-only root filesystem, no capabilities, RuntimeDefault
    seccomp); the client id and secrets only through secretKeyRef."""
    auth = wf.spec.auth
    env = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": auth.secret_name, "key": key}}}
        for key, var in m.AUTH_SECRET_KEYS.items()
    ]
    body: dict[str, Any] = {
        "name": CONTAINER,
        "image": auth.image,
        "imagePullPolicy": wf.spec.image_pull_policy,
        "args": args(wf),
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": auth.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/ping", "port": PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        # the Service sends users here: it keeps answering while kube-proxy drops a terminating pod
        "lifecycle": pods.drain_on_stop(),
        "securityContext": pods.container_security_context(),
    }
    resources = pods.resources(auth.resources)
    if resources:
        body["resources"] = resources
    return body
