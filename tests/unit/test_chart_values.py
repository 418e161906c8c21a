"""The chart's values model and every file generated from it (schema, values.yaml, tables, RBAC, CRD copy)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml
from phlo_operator import rbac
from phlo_operator.chart import dashboard, generate, schema
from phlo_operator.chart.values import ChartValues
from pydantic import BaseModel, ValidationError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "phlo-dagster"


def _walk_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _walk_models(arg, seen)


def _objects(node: Any, path: str = "$"):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _objects(item, f"{path}[{i}]")


def test_chart_version_and_app_version_follow_the_package():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert (chart["version"], chart["appVersion"]) == (version, version)


@pytest.mark.parametrize("path", sorted(str(p) for p in generate.expected_files(REPO)))
def test_generated_file_is_current(path):
    expected = generate.expected_files(REPO)[Path(path)]
    actual = (REPO / path).read_text() if (REPO / path).exists() else None
    assert actual == expected, f"{path} is stale: run `make generate`"


@pytest.mark.parametrize(
    ("source", "copy"),
    [(generate.CRD_SOURCE, generate.CRD_COPY), (generate.PEERING_SOURCE, generate.PEERING_COPY)],
    ids=["phloworkflows", "kopf-peerings"],
)
def test_chart_crd_copies_equal_the_crds_folder(source, copy):
    assert (REPO / copy).read_bytes() == (REPO / source).read_bytes()


def test_rbac_include_holds_the_operator_rules():
    text = (REPO / generate.OPERATOR_TPL).read_text()
    body = text.split('define "phlo-dagster.rbac.namespacedRules" -}}', 1)[1].split("{{- end }}", 1)[0]
    assert yaml.safe_load(body) == json.loads(json.dumps(rbac.RULES))


def test_every_value_has_a_description():
    models: set[type[BaseModel]] = set()
    _walk_models(ChartValues, models)
    missing = [f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items() if not f.description]
    assert not missing


def test_schema_rejects_unknown_keys_everywhere():
    open_maps = []
    for path, node in _objects(schema.values_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
        elif node.get("additionalProperties") is True:
            open_maps.append(path)
    # Only passthrough Kubernetes objects and the example spec (validated by the API server) are free-form.
    assert sorted(open_maps) == [
        "$.properties.affinity",
        "$.properties.exampleWorkflow.properties.spec",
        "$.properties.global",
    ]


def test_values_yaml_equals_model_defaults_and_validates():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values == ChartValues().model_dump(by_alias=True, mode="json")
    jsonschema.validate(values, json.loads((CHART / "values.schema.json").read_text()))


def test_values_yaml_covers_every_schema_property():
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def missing(node: dict[str, Any], data: Any, prefix: str) -> list[str]:
        out = []
        for key, prop in node.get("properties", {}).items():
            if not isinstance(data, dict) or key not in data:
                out.append(prefix + key)
            elif "properties" in prop:
                out.extend(missing(prop, data[key], f"{prefix}{key}."))
        return out

    assert missing(schema.values_schema(), values, "") == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"watchh": {}}, "watchh"),
        ({"watch": {"namespace": ["a"]}}, "namespace"),
        ({"image": {"pullPolicy": "Sometimes"}}, "Sometimes"),
        ({"metrics": {"port": 80}}, "80"),
        ({"replicaCount": -1}, "-1"),
        ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "Not_A_Namespace"),
    ],
)
def test_bad_values_are_rejected_by_model_and_schema(override, message):
    values = {**yaml.safe_load((CHART / "values.yaml").read_text())}
    for key, value in override.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and value else value
    with pytest.raises(ValidationError):
        ChartValues.model_validate(values)
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(values, schema.values_schema())
    assert message in str(err.value.message)


def test_values_table_lists_every_leaf_with_its_default():
    table = schema.render_values_table()
    assert "| `watch.allNamespaces` | boolean | `false` |" in table
    assert "| `metrics.port` | integer | `8080` |" in table
    assert table in (REPO / "docs/chart.md").read_text()


def test_dashboard_queries_parse_as_promql():
    for panel in dashboard.dashboard()["panels"]:
        for target in panel.get("targets", []):
            # Grafana substitutes the variables ($namespace, ...) with regexes before Prometheus sees it
            promql_parser.parse(re.sub(r"\$\w+", ".*", target["expr"]))


def test_dashboard_queries_use_only_contract_metrics():
    board = dashboard.dashboard()
    known = set(dashboard.DAGSTER_METRICS) | set(dashboard.OPERATOR_METRICS)
    used: set[str] = set()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            names = {
                word.removesuffix("_bucket")
                # metric names only: the labels of `by (...)` and `without (...)` are left out
                for word in re.findall(
                    r"[a-z_]+(?=[{\[)])", re.sub(r"(by|without) \([^)]*\)", "", target["expr"])
                )
                if word.startswith(("dagster_", "phlo_"))
            }
            assert names, target["expr"]
            assert names <= known, names - known
            used |= names
    assert used == known, f"metrics without a panel: {known - used}"
