"""Properties of the model and the renderers over generated input (hypothesis): every valid spec parses and
renders without raising into objects whose names and labels Kubernetes accepts; any other input is refused
with InvalidSpec naming a field, never another exception. tests/integration/test_render_dry_run.py sends what
is rendered to the API server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from phlo_operator import model as m
from phlo_operator.render import Facts, Workflow, render_all

from tests import spec_strategies as ss

pytestmark = pytest.mark.unit
PROFILE = settings(
    max_examples=ss.EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
DNS_LABEL = re.compile(m.DNS_LABEL)
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def rendered(name: str, spec: m.PhloWorkflowSpec, facts: Facts) -> list[dict[str, Any]]:
    desired = render_all(Workflow(name, "team", "uid-1", spec), facts)
    return desired.all_objects()


@PROFILE
@given(ss.workflow_names(), ss.specs(), ss.st.booleans(), ss.st.frozensets(ss.st.sampled_from(["x", "y"])))
def test_every_valid_spec_parses_and_renders_valid_objects(
    name: str, raw: dict[str, Any], monitor_api: bool, hpa: frozenset[str]
) -> None:
    """Mutation (2026-12-06): names._MAX_BASE 30 -> 60 (child names up to 70 characters) failed it, shrunk to
    a 64-character Deployment name (5 min 21 s on the loaded machine, 100 examples)."""
    spec = m.parse_spec(raw)
    objects = rendered(name, spec, Facts(service_monitor_api=monitor_api, hpa_targets=hpa))
    assert rendered(name, spec, Facts(service_monitor_api=monitor_api, hpa_targets=hpa)) == objects  # pure
    for obj in objects:
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        assert len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"]), where
        for key, value in meta.get("labels", {}).items():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), (where, key, value)
        json.dumps(obj)  # plain data, nothing the API client could not send
        for text in (obj.get("data") or {}).values():
            if meta["name"].endswith(("-instance", "-workspace")):
                yaml.safe_load(text)  # dagster.yaml and workspace.yaml stay YAML whatever the strings
        template = (obj.get("spec") or {}).get("template") or {}
        for container in (template.get("spec") or {}).get("containers", []):
            names = [e["name"] for e in container.get("env", [])]
            assert len(names) == len(set(names)), (where, names)


@PROFILE
@given(ss.mangled_specs())
def test_any_other_input_is_invalid_spec_never_a_crash(raw: Any) -> None:
    """Whatever a spec holds, parse_spec returns a spec or raises InvalidSpec (the reconciler reports it as
    Degraded/InvalidSpec); anything else would be a traceback in the operator."""
    try:
        spec = m.parse_spec(raw)
    except m.InvalidSpec as exc:
        assert str(exc).startswith("spec"), str(exc)
        return
    try:
        rendered("demo", spec, Facts())
    except m.InvalidSpec as exc:  # found while rendering: Dagster would refuse the resulting dagster.yaml
        assert str(exc).startswith("spec.instanceConfig: Dagster"), str(exc)
