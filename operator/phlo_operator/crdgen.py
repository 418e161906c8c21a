"""Turns the pydantic model into the CRD's structural schema; the model is its only source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from phlo_operator import model as m
from phlo_operator.schema_refs import inlined_schema
from phlo_operator.status_model import PhloWorkflowStatus

CRD_PATH = Path("crds") / f"{m.GROUP}_{m.PLURAL}.yaml"
PEERING_PATH = Path("crds") / "kopf.dev_peerings.yaml"
_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "maxItems",
    "pattern",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
}


def _structural(node: dict[str, Any], *, field: bool = False) -> dict[str, Any]:
    """Collapse pydantic's Optional/anyOf forms into the structural schema Kubernetes requires."""
    node = dict(node)
    had_default = "default" in node
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if node.get("default", "") is None:
            node.pop("default")
        if len(options) == 1:
            merged = dict(options[0])
            merged.update({k: v for k, v in node.items() if k not in merged or k == "description"})
            node = merged
        elif sorted(o.get("type") for o in options) == ["integer", "string"]:
            return {k: v for k, v in node.items() if k in ("description", "default")} | {
                "x-kubernetes-int-or-string": True
            }
        else:
            raise ValueError(f"cannot express union {options} in a structural schema")
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        inner.update(node)
        node = inner
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key in _KEEP:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = out.get("type", "object")
        out.pop("additionalProperties", None)
        out.pop("properties", None)
    if "properties" in out:
        out["properties"] = {k: _structural(v, field=True) for k, v in out["properties"].items()}
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _structural(out["additionalProperties"])
    elif out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    if isinstance(out.get("items"), dict):
        out["items"] = _structural(out["items"])
    if field and not had_default and out.get("type") == "object" and "properties" in out:
        # A section built by default_factory: an absent parent must still receive its children's defaults.
        if not out.get("required"):
            out["default"] = {}
    return out


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema, inlined and made structural."""
    schema = _structural(inlined_schema(model))
    schema.pop("default", None)
    return schema


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    spec_schema = schema_for(m.PhloWorkflowSpec)
    status_schema = schema_for(PhloWorkflowStatus)
    ready = '.status.conditions[?(@.type=="Ready")]'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{m.PLURAL}.{m.GROUP}"},
        "spec": {
            "group": m.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": m.KIND,
                "listKind": f"{m.KIND}List",
                "plural": m.PLURAL,
                "singular": m.SINGULAR,
                "shortNames": m.SHORT_NAMES,
                "categories": m.CATEGORIES,
            },
            "versions": [
                {
                    "name": m.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
                        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Dagster deployment (webserver, daemon, code server, "
                            "storage) for Phlo workflows, reconciled by phlo-dagster-operator.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "Versioned schema of this object: phlo.dev/v1alpha1.",
                                },
                                "kind": {"type": "string", "description": "PhloWorkflow."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_yaml() -> str:
    """The CRD as committed in crds/."""
    header = "# Generated by `make generate` from phlo_operator.model. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


_OPEN_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def peering_crds() -> list[dict[str, Any]]:
    """kopf's peering resources (kopf.dev/v1), so two operator replicas elect one that acts."""
    out = []
    for kind, scope in (("KopfPeering", "Namespaced"), ("ClusterKopfPeering", "Cluster")):
        plural = kind.lower() + "s"
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.kopf.dev"},
                "spec": {
                    "group": "kopf.dev",
                    "scope": scope,
                    "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "description": "Liveness records of kopf operator replicas (peering).",
                                    "properties": {"status": _OPEN_OBJECT},
                                }
                            },
                        }
                    ],
                },
            }
        )
    return out


def render_peering_yaml() -> str:
    header = "# Generated by `make generate` (phlo_operator.crdgen). kopf peering CRDs. Do not edit.\n"
    return header + yaml.safe_dump_all(peering_crds(), sort_keys=False, width=120)


def write(root: Path) -> list[Path]:
    """Write crds/phlo.dev_phloworkflows.yaml and crds/kopf.dev_peerings.yaml under root."""
    path = root / CRD_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_yaml())
    peering = root / PEERING_PATH
    peering.write_text(render_peering_yaml())
    return [path, peering]
