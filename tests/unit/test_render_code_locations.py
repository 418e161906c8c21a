"""spec.codeLocations: each location's own code server, Service, NetworkPolicy, dbt Job and workspace entry;
a spec without it renders exactly as before (one location, phlo)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator import model as m
from phlo_operator import names
from phlo_operator.model import parse_spec
from phlo_operator.render import Facts, Workflow, config, render_all, shared

from tests.corpus_manifests import CORPUS
from tests.unit.test_render import run_pod

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
LOCATION_FIELDS = ("workflows", "dbt")


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def two(**changes: Any) -> Workflow:
    """Locations sales (dbt) and marketing-analytics (a name too long for a plain child suffix)."""
    sales = {"name": "sales", "image": "team/sales:1", "dbt": {"enabled": True}, "port": 4100}
    marketing = {"name": "marketing-analytics", "image": "team/mkt:1", "workflows": {"path": "/mkt"}}
    for name, change in changes.items():
        (sales if name == "sales" else marketing).update(change)
    return wf(codeLocations=[sales, marketing])


def by_name(w: Workflow, facts: Facts | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_all(w, facts).all_objects()}


def as_explicit_phlo(spec: dict[str, Any]) -> dict[str, Any]:
    """The same workflow written with spec.codeLocations: one location phlo carrying the location settings."""
    spec = copy.deepcopy(spec)
    location: dict[str, Any] = {"name": "phlo", **spec.pop("codeServer", {})}
    location["image"] = location.get("image") or spec["image"]
    for field in LOCATION_FIELDS:
        if field in spec:
            location[field] = spec.pop(field)
    return {**spec, "codeLocations": [location]}


def good_manifests() -> list[tuple[str, dict[str, Any]]]:
    paths = [ROOT / "examples/quickstart/workflow.yaml", *sorted(CORPUS.glob("good-*.yaml"))]
    out = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "PhloWorkflow":
                out.append((path.name, doc))
    return out


@pytest.mark.parametrize(("file", "doc"), good_manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_listing_the_one_location_phlo_renames_nothing(file: str, doc: dict[str, Any]) -> None:
    """Moving a workflow's location settings into spec.codeLocations as `phlo` keeps every object's name,
    labels and selector, and its dbt Job (the same compile); only env moves (tests/unit/test_render_golden.py
    holds the render of a spec without codeLocations to the byte)."""
    implicit = Workflow("demo", "team", "uid-1", parse_spec(doc["spec"]))
    explicit = Workflow("demo", "team", "uid-1", parse_spec(as_explicit_phlo(doc["spec"])))
    assert [loc.name for loc in implicit.locations] == ["phlo"]
    before, after = by_name(implicit), by_name(explicit)
    assert before.keys() == after.keys()
    assert ("Deployment", "demo-code-server") in before and ("Job", "demo-code-phlo") not in before
    for key, obj in before.items():
        assert obj["metadata"]["labels"] == after[key]["metadata"]["labels"], key
        assert obj.get("spec", {}).get("selector") == after[key].get("spec", {}).get("selector"), key
    assert render_all(implicit).absent == render_all(explicit).absent


def test_each_location_gets_its_own_code_server_service_network_policy_and_dbt_job() -> None:
    objs = by_name(two())
    mkt = names.location_suffix("marketing-analytics")
    assert mkt.startswith("code-mark") and len(mkt) <= 16
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert (kind, "demo-code-sales") in objs and (kind, f"demo-{mkt}") in objs
        assert (kind, "demo-code-server") not in objs  # no implicit phlo beside the listed locations
    sales, marketing = objs[("Deployment", "demo-code-sales")], objs[("Deployment", f"demo-{mkt}")]
    for dep, location in ((sales, "sales"), (marketing, "marketing-analytics")):
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector[names.LOCATION_LABEL] == location
        assert selector["app.kubernetes.io/component"] == "code-location"
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        service = objs[("Service", dep["metadata"]["name"])]
        assert service["spec"]["selector"] == selector
        policy = objs[("NetworkPolicy", dep["metadata"]["name"])]
        assert policy["spec"]["podSelector"]["matchLabels"] == selector
    assert sales["spec"]["template"]["spec"]["containers"][0]["image"] == "team/sales:1"
    assert marketing["spec"]["template"]["spec"]["containers"][0]["image"] == "team/mkt:1"
    # The Service listens on a fixed port (workspace.yaml does not follow a location's port) and forwards.
    assert objs[("Service", "demo-code-sales")]["spec"]["ports"][0]["port"] == 4000
    assert objs[("Service", "demo-code-sales")]["spec"]["ports"][0]["targetPort"] == "grpc"
    assert sales["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 4100
    assert objs[("NetworkPolicy", "demo-code-sales")]["spec"]["ingress"][0]["ports"][0]["port"] == 4100
    assert objs[("NetworkPolicy", f"demo-{mkt}")]["spec"]["ingress"][0]["ports"][0]["port"] == 4000
    env = {e["name"]: e.get("value") for e in marketing["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PHLO_CODE_LOCATION_NAME"] == "marketing-analytics" and env["WORKFLOWS_PATH"] == "/mkt"
    assert env["PHLO_DBT_ENABLED"] == "false"
    [job] = [o for o in objs.values() if o["kind"] == "Job"]
    assert job["metadata"]["labels"][names.LOCATION_LABEL] == "sales"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "team/sales:1"
    init = sales["spec"]["template"]["spec"]["initContainers"][0]
    assert init == job["spec"]["template"]["spec"]["containers"][0]


def test_workspace_yaml_lists_every_location_at_its_service() -> None:
    w = two()
    workspace = yaml.safe_load(config.workspace_configmap(w, shared(w))["data"]["workspace.yaml"])
    mkt = names.location_suffix("marketing-analytics")
    assert [entry["grpc_server"] for entry in workspace["load_from"]] == [
        {"host": "demo-code-sales", "port": 4000, "location_name": "sales"},
        {"host": f"demo-{mkt}", "port": 4000, "location_name": "marketing-analytics"},
    ]


@pytest.mark.parametrize(
    "change",
    [{"image": "team/sales:2"}, {"replicas": 3}, {"env": [{"name": "X", "value": "1"}]}, {"port": 4200}],
    ids=["image", "replicas", "env", "port"],
)
def test_changing_one_location_leaves_the_webserver_daemon_and_other_location_byte_identical(
    change: dict[str, Any],
) -> None:
    before, after = by_name(two()), by_name(two(sales=change))
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    for unchanged in (
        "demo-webserver",
        "demo-daemon",
        f"demo-{names.location_suffix('marketing-analytics')}",
    ):
        assert before[("Deployment", unchanged)] == after[("Deployment", unchanged)], unchanged
    assert ("ConfigMap", "demo-instance") not in changed
    assert ("Deployment", "demo-code-sales") in changed
    assert ("ConfigMap", "demo-workspace") not in changed
    assert changed <= {
        ("Deployment", "demo-code-sales"),
        ("NetworkPolicy", "demo-code-sales"),
        ("PodDisruptionBudget", "demo-code-sales"),
        *((k, n) for k, n in before.keys() | after.keys() if k == "Job"),
    }, changed


def test_an_image_change_compiles_only_that_locations_dbt() -> None:
    both = {"dbt": {"enabled": True}}
    before = render_all(two(**{"marketing-analytics": both}))
    after = render_all(two(**{"marketing-analytics": both}, sales={"image": "team/sales:2"}))
    assert before.locations[0].dbt_job != after.locations[0].dbt_job
    assert before.locations[1].dbt_job == after.locations[1].dbt_job
    assert before.locations[1].code_server == after.locations[1].code_server


def test_locations_with_the_same_inputs_get_distinct_dbt_jobs() -> None:
    w = wf(codeLocations=[{"name": "a", "dbt": {"enabled": True}}, {"name": "b", "dbt": {"enabled": True}}])
    jobs = [part.dbt_job for part in render_all(w).locations]
    assert jobs[0] is not None and jobs[1] is not None
    assert jobs[0]["metadata"]["name"] != jobs[1]["metadata"]["name"]


def test_run_pods_of_each_location_run_its_image_and_its_settings(tmp_path: Path) -> None:
    w = two()
    sales, marketing = run_pod(w, tmp_path, location=0), run_pod(w, tmp_path, location=1)
    assert sales.containers[0].image == "team/sales:1" and marketing.containers[0].image == "team/mkt:1"
    [init] = sales.init_containers
    assert init.image == "team/sales:1" and not marketing.init_containers

    def effective(pod: Any) -> dict[str, str]:  # the kubelet: a later entry of a name wins
        return {e.name: e.value for e in pod.containers[0].env}

    assert effective(sales)["PHLO_CODE_LOCATION_NAME"] == "sales"
    assert effective(sales)["PHLO_DBT_ENABLED"] == "true"
    assert effective(marketing)["PHLO_CODE_LOCATION_NAME"] == "marketing-analytics"
    assert effective(marketing)["WORKFLOWS_PATH"] == "/mkt"
    assert effective(marketing)["PHLO_DBT_ENABLED"] == "false"
    # A spec without locations adds nothing to its runs' env (dagster.yaml carries it all, as before).
    plain = render_all(wf()).code_server["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "DAGSTER_CONTAINER_CONTEXT" not in {e["name"] for e in plain}


def test_pdbs_and_image_pull_policy_per_location() -> None:
    w = two(sales={"replicas": 2, "imagePullPolicy": "Always"})
    objs = by_name(w)
    assert ("PodDisruptionBudget", "demo-code-sales") in objs
    assert ("PodDisruptionBudget", f"demo-{names.location_suffix('marketing-analytics')}") not in objs
    sales = objs[("Deployment", "demo-code-sales")]["spec"]["template"]["spec"]
    assert sales["containers"][0]["imagePullPolicy"] == "Always"
    assert sales["initContainers"][0]["imagePullPolicy"] == "Always"
    webserver = objs[("Deployment", "demo-webserver")]["spec"]["template"]["spec"]
    assert webserver["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_a_removed_location_and_the_implicit_phlo_are_deleted() -> None:
    w = two()
    absent = render_all(w, Facts(previous_locations=frozenset({"sales", "old"}))).absent
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert any(r[1] == kind and r[3] == "demo-code-old" for r in absent)
        assert any(r[1] == kind and r[3] == "demo-code-server" for r in absent)
        assert not any(r[1] == kind and r[3] == "demo-code-sales" for r in absent)


def test_location_settings_are_checked_with_the_field_named() -> None:
    with pytest.raises(m.InvalidSpec, match=r"spec.codeLocations: sales appears twice"):
        parse_spec({"image": "i:1", "codeLocations": [{"name": "sales"}, {"name": "sales"}]})
    with pytest.raises(m.InvalidSpec, match=r"spec.codeLocations.0.name"):
        parse_spec({"image": "i:1", "codeLocations": [{"name": "Sales_1"}]})
    with pytest.raises(m.InvalidSpec, match=r"spec: dbt is for the single location.*codeLocations\[\].dbt"):
        parse_spec({"image": "i:1", "codeLocations": [{"name": "a"}], "dbt": {"enabled": True}})
    with pytest.raises(m.InvalidSpec, match=r"spec: codeServer settings other than image"):
        parse_spec({"image": "i:1", "codeLocations": [{"name": "a"}], "codeServer": {"replicas": 2}})
    with pytest.raises(m.InvalidSpec, match=r"spec.codeLocations"):
        parse_spec(
            {"image": "i:1", "codeLocations": [{"name": f"l{i}"} for i in range(m.CODE_LOCATIONS_MAX + 1)]}
        )
    with pytest.raises(m.InvalidSpec, match=r"spec.codeLocations.0.podOverrides"):
        parse_spec(
            {
                "image": "i:1",
                "codeLocations": [{"name": "a", "podOverrides": {"spec": {"hostNetwork": True}}}],
            }
        )
    # codeServer.image stays: the locations' default image.
    spec = parse_spec({"image": "i:1", "codeServer": {"image": "c:1"}, "codeLocations": [{"name": "a"}]})
    assert Workflow("d", "n", "u", spec).locations[0].image == "c:1"


def test_location_names_map_to_distinct_child_names() -> None:
    assert names.location_suffix("phlo") == "code-server"
    assert names.location_suffix("server") != "code-server"  # would take phlo's names
    assert names.location_suffix("a" * 63) != names.location_suffix("a" * 62)
    for name in ("a", "server", "a" * 11, "a" * 12, "x-" * 31 + "x"):
        assert len(names.location_suffix(name)) <= 16
        names.child("some-workflow", names.location_suffix(name))


def test_the_index_of_referenced_objects_covers_each_locations_env() -> None:
    spec = parse_spec(
        {
            "image": "i:1",
            "codeLocations": [{"name": "a", "envFrom": [{"secretRef": {"name": "team-a"}}]}],
        }
    )
    assert ("Secret", "team-a") in spec.referenced_objects()
