"""Every pod the operator renders, and every run pod it configures, passes Pod Security "restricted" for any
valid spec, podOverrides included (judged on the complete pod: what must be set, not only what must not)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from phlo_operator import model as m
from phlo_operator.render import Workflow, config, render_all, shared

from tests import spec_strategies as ss

pytestmark = pytest.mark.unit

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
ALLOWED_VOLUMES |= {"projected", "secret"}


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    """The checks of the "restricted" profile (Kubernetes' Pod Security Standards) on a complete PodSpec."""
    out = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    for volume in pod.get("volumes") or []:
        if set(volume) - {"name"} - ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']}")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for ctr in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        sc = ctr.get("securityContext") or {}
        name = ctr.get("name")
        if not ctr.get("image"):
            out.append(f"{name}: no image")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities")
        if (sc.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccomp")
        if any(p.get("hostPort") for p in ctr.get("ports") or []):
            out.append(f"{name}: hostPort")
    return out


def run_pod(w: Workflow) -> dict[str, Any]:
    """The run pod as dagster-k8s assembles it (the launcher's config, then the location's context)."""
    doc = yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])
    run = doc["run_launcher"]["config"]["run_k8s_config"]
    pod = dict(run["pod_spec_config"])
    main = {"name": "dagster", "image": w.code_image, **run["container_config"]}
    pod["containers"] = [main, *pod.get("containers", [])]
    code_server = render_all(w).code_server["spec"]["template"]["spec"]["containers"][0]
    context = next((e["value"] for e in code_server["env"] if e["name"] == "DAGSTER_CONTAINER_CONTEXT"), None)
    if context:
        extra = json.loads(context)["k8s"]["run_k8s_config"].get("pod_spec_config", {})
        pod["initContainers"] = [*pod.get("initContainers", []), *extra.get("initContainers", [])]
    return pod


def test_the_checker_sees_a_missing_hardening() -> None:
    """The property below can fail: a pod without the hardened context is caught."""
    pod = {"containers": [{"name": "c", "image": "i", "securityContext": {}}]}
    assert restricted_problems(pod) == [
        "c: allowPrivilegeEscalation",
        "c: runAsNonRoot",
        "c: capabilities",
        "c: seccomp",
    ]


@settings(
    max_examples=ss.EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ss.specs())
def test_every_rendered_pod_is_restricted(raw: dict[str, Any]) -> None:
    w = Workflow("demo", "team", "uid-1", m.parse_spec(raw))
    d = render_all(w)
    for obj in d.all_objects():
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            problems = restricted_problems(obj["spec"]["template"]["spec"])
            assert not problems, (obj["kind"], obj["metadata"]["name"], problems)
    assert not restricted_problems(run_pod(w))
