"""spec.codeLocations through a reconcile pass on the in-memory API server: each location gated on its own
dbt Job, rolled and reloaded on its own, reported in status.codeLocations."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.test_reconcile import NAME, NS, WEBSERVER, Bed

pytestmark = pytest.mark.unit
SALES = ("apps/v1", "Deployment", NS, f"{NAME}-code-sales")
MARKETING = ("apps/v1", "Deployment", NS, f"{NAME}-code-marketing")
DAEMON = ("apps/v1", "Deployment", NS, f"{NAME}-daemon")
LOCATIONS: list[dict[str, Any]] = [
    {"name": "sales", "image": "team/sales:1", "dbt": {"enabled": True}},
    {"name": "marketing", "image": "team/mkt:1"},
]


def bed() -> Bed:
    return Bed(dbt={"enabled": False}, codeLocations=copy.deepcopy(LOCATIONS))


def ready(b: Bed) -> None:
    b.run()
    b.kube.finish_job()
    b.run()
    b.kube.settle()
    b.run()
    b.kube.settle()
    b.run()
    assert b.condition("Ready")["status"] == "True", b.status()["conditions"]


def test_each_location_is_gated_on_its_own_compile_and_reported() -> None:
    b = bed()
    b.run()
    assert b.kube.get(SALES) is None  # waits for its dbt Job
    assert b.kube.get(MARKETING) is not None  # has no dbt: not held back by the other's compile
    assert b.condition("DbtCompiled")["reason"] == "Running"
    assert b.condition("DbtCompiled")["message"].startswith("sales: ")
    (job,) = b.kube.dbt_jobs()
    assert job["metadata"]["labels"]["phlo.dev/code-location"] == "sales"
    ready(b)
    entries = {e["name"]: e for e in b.status()["codeLocations"]}
    assert entries.keys() == {"sales", "marketing"}
    assert entries["sales"]["image"] == "team/sales:1" and entries["marketing"]["image"] == "team/mkt:1"
    assert entries["sales"]["readyReplicas"] == 1 and entries["sales"]["loaded"] is True
    assert entries["sales"]["dbt"]["specHash"] and "dbt" not in entries["marketing"]
    assert entries["sales"]["templateHash"] != entries["marketing"]["templateHash"]
    assert {location for _, location in b.probes} == {"sales", "marketing"}
    assert "codeServer" not in b.status() and "dbt" not in b.status()  # phlo's bookkeeping only


def test_changing_one_locations_image_rolls_and_reloads_only_it() -> None:
    b = bed()
    ready(b)
    webserver, daemon, sales = b.kube.get(WEBSERVER), b.kube.get(DAEMON), b.kube.get(SALES)
    b.reloads.clear()
    changed = copy.deepcopy(LOCATIONS)
    changed[1]["image"] = "team/mkt:2"
    b.patch_spec(codeLocations=changed)
    b.run()
    assert b.kube.get(WEBSERVER) == webserver and b.kube.get(DAEMON) == daemon
    assert b.kube.get(SALES) == sales
    marketing = b.kube.get(MARKETING)
    assert marketing is not None
    assert marketing["spec"]["template"]["spec"]["containers"][0]["image"] == "team/mkt:2"
    assert len(b.kube.dbt_jobs()) == 1  # sales' compile inputs did not change
    b.kube.settle()
    b.run()
    assert [location for _, location in b.reloads] == ["marketing"]
    entries = {e["name"]: e for e in b.status()["codeLocations"]}
    assert entries["marketing"]["image"] == "team/mkt:2"
    assert entries["marketing"]["reloadedHash"] == entries["marketing"]["templateHash"]


def test_a_removed_location_loses_its_code_server_and_its_dbt_jobs() -> None:
    b = bed()
    ready(b)
    b.patch_spec(codeLocations=[copy.deepcopy(LOCATIONS[0])])
    b.run()
    assert b.kube.get(MARKETING) is None
    assert b.kube.get(("v1", "Service", NS, f"{NAME}-code-marketing")) is None
    assert [e["name"] for e in b.status()["codeLocations"]] == ["sales"]
    assert len(b.kube.dbt_jobs()) == 1
    b.patch_spec(codeLocations=[copy.deepcopy(LOCATIONS[1])])
    b.run()
    assert b.kube.get(SALES) is None and b.kube.dbt_jobs() == []  # sales' compile went with it
    assert b.kube.get(MARKETING) is not None


def test_a_failed_compile_of_one_location_degrades_and_names_it() -> None:
    b = bed()
    b.run()
    b.kube.finish_job(ok=False)
    b.run()
    assert b.condition("Degraded")["reason"] == "DbtCompileFailed"
    assert "sales: " in b.condition("DbtCompiled")["message"]
    assert "spec.codeLocations[0].dbt.projectDir" in b.condition("DbtCompiled")["message"]
