"""spec.codeLocations on the test bed: one workflow with two locations becomes Ready with two code servers
behind one webserver; changing one location's image rolls only its code server and reloads only it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from tests.integration import test_operator as base
from tests.integration.test_operator import NAME, WORKFLOW, Kubectl, Operator, ReloadRecorder, wait_for

# test_operator.py's fixtures, for this module's test (crds comes from tests/conftest.py).
kc, operator, reload_recorder, volume = (
    base.kc,
    base.operator,
    base.reload_recorder,
    base.volume,
)

pytestmark = pytest.mark.integration
LOCATIONS: list[dict[str, Any]] = [
    {"name": "sales", "image": "phlo-dagster:0.4.0", "dbt": {"enabled": True, "projectDir": "/app/dbt"}},
    {"name": "marketing", "image": "phlo-dagster:0.4.0", "workflows": {"path": "/app/marketing"}},
]


def apply(kc: Kubectl, locations: list[dict[str, Any]]) -> None:
    """The quickstart with its location settings replaced by spec.codeLocations."""
    doc = yaml.safe_load(WORKFLOW.read_text())
    for field in ("workflows", "dbt", "codeServer"):
        doc["spec"].pop(field, None)
    doc["spec"]["codeLocations"] = locations
    kc("apply", "-f", "-", input=json.dumps(doc))


def current(kc: Kubectl) -> bool:
    cr = kc.must("pwf", NAME)
    ready = next((c for c in cr.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
    return bool(
        ready.get("status") == "True" and ready.get("observedGeneration") == cr["metadata"]["generation"]
    )


def test_two_locations_behind_one_webserver_roll_and_reload_on_their_own(
    kc: Kubectl, operator: Operator, volume: str, reload_recorder: ReloadRecorder
) -> None:
    apply(kc, copy.deepcopy(LOCATIONS))
    kc.wait_condition("Ready", timeout=180)
    sales, marketing = kc.must("deploy", f"{NAME}-code-sales"), kc.must("deploy", f"{NAME}-code-marketing")
    assert kc.get("deploy", f"{NAME}-code-server") is None
    for service in ("code-sales", "code-marketing"):
        kc.must("svc", f"{NAME}-{service}")
        kc.must("networkpolicy", f"{NAME}-{service}")
    workspace = yaml.safe_load(kc.must("configmap", f"{NAME}-workspace")["data"]["workspace.yaml"])
    assert [e["grpc_server"]["location_name"] for e in workspace["load_from"]] == ["sales", "marketing"]
    assert [e["grpc_server"]["host"] for e in workspace["load_from"]] == [
        f"{NAME}-code-sales",
        f"{NAME}-code-marketing",
    ]
    jobs = kc.items("job", "phlo.dev/code-location=sales")
    assert len(jobs) == 1  # only sales compiles dbt
    status = kc.must("pwf", NAME)["status"]
    entries = {e["name"]: e for e in status["codeLocations"]}
    assert entries.keys() == {"sales", "marketing"}
    assert all(e["readyReplicas"] >= 1 and e["templateHash"] for e in entries.values()), entries
    assert entries["sales"]["dbt"]["specHash"]

    webserver, daemon = kc.must("deploy", f"{NAME}-webserver"), kc.must("deploy", f"{NAME}-daemon")
    reload_recorder.calls.clear()
    changed = copy.deepcopy(LOCATIONS)
    changed[1]["image"] = "phlo-dagster:0.4.1"
    apply(kc, changed)
    wait_for(
        "the marketing code server on the new image",
        lambda: (
            (
                kc.must("deploy", f"{NAME}-code-marketing")["spec"]["template"]["spec"]["containers"][0][
                    "image"
                ]
            )
            == "phlo-dagster:0.4.1"
        ),
    )
    wait_for("Ready after the rollout", lambda: current(kc), timeout=120)
    wait_for("the reload of marketing", lambda: reload_recorder.calls)
    assert [c["variables"] for c in reload_recorder.calls] == [{"name": "marketing"}]
    for name, before in (("webserver", webserver), ("daemon", daemon), ("code-sales", sales)):
        after = kc.must("deploy", f"{NAME}-{name}")
        assert after["metadata"]["generation"] == before["metadata"]["generation"], name
        assert after["spec"]["template"] == before["spec"]["template"], name
    assert (
        kc.must("deploy", f"{NAME}-code-marketing")["metadata"]["generation"]
        > marketing["metadata"]["generation"]
    )
    entries = {e["name"]: e for e in kc.must("pwf", NAME)["status"]["codeLocations"]}
    assert entries["marketing"]["image"] == "phlo-dagster:0.4.1"
    assert len(kc.items("job", "phlo.dev/code-location=sales")) == 1  # no new compile for sales
