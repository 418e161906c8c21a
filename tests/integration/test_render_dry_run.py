"""What any valid spec renders, the API server accepts: generated PhloWorkflows (tests/spec_strategies.py)
pass the CRD in a server-side dry-run create, and every child the operator would write passes a server-side
dry-run apply sent through the operator's own client (its encoding, its field manager). The Gateway API's
own HTTPRoute CRD (its standard channel, from the module the Go module proxy serves) is installed for the
module, so a generated spec.httpRoute meets that CRD's schema and CEL rules too."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import config as kube_config
from phlo_operator import model as m
from phlo_operator.apply import APPLY_PATCH, ApiError, Kube, path, ref_of
from phlo_operator.names import MANAGER
from phlo_operator.render import Facts, Workflow, render_all
from phlo_operator.render import postgres as pg_render

from tests import spec_strategies as ss
from tests.testbed.cluster import Testbed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kube(testbed: Testbed) -> Kube:
    return Kube(kube_config.new_client_from_config(config_file=str(testbed.kubeconfig)))


@pytest.fixture(scope="module")
def namespaces(testbed: Testbed) -> Iterator[tuple[str, str]]:
    """The workflow's namespace and another one for runLauncher.namespace."""
    pair = (f"dry-run-{uuid.uuid4().hex[:6]}", f"dry-run-runs-{uuid.uuid4().hex[:6]}")
    for ns in pair:
        testbed.kubectl("create", "namespace", ns)
    yield pair
    for ns in pair:
        testbed.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


GATEWAY_API = "v1.6.3"  # sigs.k8s.io/gateway-api (v1.7 needs Go 1.27)
HTTP_ROUTE_CRD = "httproutes.gateway.networking.k8s.io"


@pytest.fixture(scope="module")
def gateway_api(testbed: Testbed) -> Iterator[None]:
    """The Gateway API's HTTPRoute CRD for this module; removed after it (the operator tests expect none)."""
    with tempfile.TemporaryDirectory() as scratch:  # outside any go.mod
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": ""}
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{GATEWAY_API}"],
            cwd=scratch, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    found = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in found:
        pytest.fail(f"go mod download sigs.k8s.io/gateway-api@{GATEWAY_API}: {found or out.stderr}")
    crd = Path(found["Dir"]) / "config" / "crd" / "standard" / "gateway.networking.k8s.io_httproutes.yaml"
    testbed.kubectl("apply", "--server-side", "-f", str(crd))
    testbed.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{HTTP_ROUTE_CRD}")
    yield
    testbed.kubectl("delete", "crd", HTTP_ROUTE_CRD, "--ignore-not-found", "--timeout=60s", check=False)


def _dry_run(kube: Kube, obj: dict[str, Any]) -> None:
    api_version, kind, namespace, name = ref_of(obj)
    query = [("fieldManager", MANAGER), ("force", "true"), ("dryRun", "All")]
    kube.request("PATCH", path(api_version, kind, namespace, name), obj, query, APPLY_PATCH)


@settings(
    max_examples=ss.BED_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(name=ss.workflow_names(), raw=ss.specs())
def test_what_a_valid_spec_renders_the_api_server_accepts(
    kube: Kube,
    namespaces: tuple[str, str],
    crds: None,
    gateway_api: None,
    name: str,
    raw: dict[str, Any],
) -> None:
    """What it found (2026-12-06), each fixed in the model: int64 bounds on tolerationSeconds made the CRD
    refuse every value; hugepages not a whole number of pages or without cpu/memory; a cpu divisor of 2.
    Mutation: apply_body as plain json.dumps failed it within 100 examples (an emoji in an env value)."""
    namespace, runs = namespaces
    if "namespace" in raw.get("runLauncher", {}):
        raw["runLauncher"]["namespace"] = runs
    spec = m.parse_spec(raw)
    cr = {"apiVersion": m.API_VERSION, "kind": m.KIND, "metadata": {"name": name, "namespace": namespace}}
    try:
        kube.request("POST", path(m.API_VERSION, m.KIND, namespace), {**cr, "spec": raw}, [("dryRun", "All")])
    except ApiError as exc:
        pytest.fail(f"the CRD refused a spec the model accepts: {exc}")

    wf = Workflow(name, namespace, str(uuid.uuid4()), spec)
    facts = Facts(service_monitor_api=False, hpa_targets=frozenset(), http_route_api=True)
    desired = render_all(wf, facts)
    objects = desired.all_objects()
    if spec.storage.postgres.is_managed:
        objects.append(pg_render.secret(wf, "generated-password"))
    if wf.run_namespace != namespace:
        data = {k: "eA==" for k in pg_render.SECRET_KEYS}
        objects.append(pg_render.run_secret_copy(wf, data))
    refused = []
    for obj in objects:
        try:
            _dry_run(kube, obj)
        except ApiError as exc:
            refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert refused == [], "\n".join(refused)
