"""Artifacts derived from the chart's values model: values.schema.json, values.yaml and the values table."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from phlo_dagster.text import one_line
from phlo_operator.chart.values import ChartValues
from phlo_operator.schema_refs import inlined_schema

YAML_HEADER = (
    "# Default values of the phlo-dagster chart.\n"
    "# GENERATED from operator/phlo_operator/chart/values.py by `make generate`: edit the model instead.\n"
    "# values.schema.json (from the same model) rejects unknown keys.\n"
)


def values_schema() -> dict[str, Any]:
    """The JSON schema Helm validates values against (draft-07, so older Helm 3 releases read it too)."""
    return {"$schema": "http://json-schema.org/draft-07/schema#", **inlined_schema(ChartValues)}


def render_schema_json() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


def default_values() -> dict[str, Any]:
    return ChartValues().model_dump(by_alias=True, mode="json")


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=100 - len(indent))]


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return dumped.removesuffix("\n...").strip()


def _emit(model: type[BaseModel], values: dict[str, Any], indent: str, lines: list[str]) -> None:
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = values[key]
        if lines and lines[-1] != "" and not indent:
            lines.append("")
        lines.extend(_comment(field.description or "", indent))
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{indent}{key}:")
            _emit(annotation, value, indent + "  ", lines)
        elif isinstance(value, dict | list) and value:
            block = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=1000)
            lines.append(f"{indent}{key}:")
            lines.extend(f"{indent}  {line}" for line in block.splitlines())
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}")


def render_values_yaml() -> str:
    lines: list[str] = []
    _emit(ChartValues, default_values(), "", lines)
    return YAML_HEADER + "\n" + "\n".join(lines) + "\n"


def _type_name(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type_name(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_name(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("type") == "string":
            return "map of string"
        if "properties" in prop:
            return "object"
        return "object (free-form)"
    return str(kind)


def _rows(schema: dict[str, Any], defaults: Any, prefix: str, out: list[tuple[str, str, str, str]]) -> None:
    for key, prop in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        value = defaults.get(key) if isinstance(defaults, dict) else None
        if (
            prop.get("type") == "object"
            and "properties" in prop
            and prop.get("additionalProperties") is False
        ):
            _rows(prop, value, path + ".", out)
            continue
        default = json.dumps(value, separators=(", ", ": "))
        description = one_line(str(prop.get("description", ""))).replace("|", "\\|")
        out.append((path, _type_name(prop), default, description))


def render_values_table() -> str:
    """Markdown table of every leaf value: key, type, default and the model's description."""
    rows: list[tuple[str, str, str, str]] = []
    _rows(values_schema(), default_values(), "", rows)
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, kind, default, description in rows:
        lines.append(f"| `{path}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines) + "\n"
