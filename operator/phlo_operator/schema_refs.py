"""Pydantic JSON schemas with every $ref replaced by its definition: the CRD and the chart's values schema
read top-down and carry no $defs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """node with each {"$ref": ...} replaced by its definition (sibling keys win); pydantic's titles dropped
    (they repeat the key names; descriptions carry the meaning)."""
    if isinstance(node, list):
        return [inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return inline_refs({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "properties":  # keys here are field names, never keywords
            out[key] = {name: inline_refs(prop, defs) for name, prop in value.items()}
        else:
            out[key] = inline_refs(value, defs)
    return out


def inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's validation schema by alias, without $defs."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = inline_refs(raw, defs)
    return schema
