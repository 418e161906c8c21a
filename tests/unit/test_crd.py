"""The committed CRD is what the model generates, is structural, and documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator import crdgen

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_committed_crd_is_not_stale() -> None:
    committed = (ROOT / crdgen.CRD_PATH).read_text()
    assert committed == crdgen.render_yaml(), "crds/ is stale: run `make generate`"
    peering = (ROOT / crdgen.PEERING_PATH).read_text()
    assert peering == crdgen.render_peering_yaml(), "crds/ is stale: run `make generate`"


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in node.get("properties", {}).items():
        out += _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def _schema() -> dict[str, Any]:
    crd = crdgen.build_crd()
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _schema()
    for root in ("spec", "status"):
        for path, node in _walk(schema["properties"][root], root):
            if path.endswith("{}") or path.endswith("[]"):
                continue
            assert node.get("description"), f"{path} has no description (kubectl explain would be empty)"


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema(), ""):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"


def test_names_printer_columns_and_status_subresource() -> None:
    crd = crdgen.build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "phloworkflows.phlo.dev"
    assert (
        names["kind"] == "PhloWorkflow" and names["shortNames"] == ["pwf"] and names["categories"] == ["phlo"]
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Reason", "Age"]


def test_cel_rule_for_postgres_source_and_defaults() -> None:
    spec = _schema()["properties"]["spec"]
    pg = spec["properties"]["storage"]["properties"]["postgres"]
    rules = [r["rule"] for r in pg["x-kubernetes-validations"]]
    assert any("secretName" in r and "managed" in r for r in rules)
    assert spec["properties"]["webserver"]["properties"]["port"]["default"] == 3000
    assert spec["properties"]["runLauncher"]["properties"]["jobTTLSeconds"]["default"] == 3600
    assert spec["properties"]["webserver"]["default"] == {}
    assert yaml.safe_load(crdgen.render_yaml())["kind"] == "CustomResourceDefinition"
