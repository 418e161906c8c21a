"""Dagster's dagster.yaml schema as plain JSON, so the operator (which has no Dagster) can check the instance
config it renders against the Dagster version of the runtime image.

`python -m phlo_dagster.instance_schema` prints it; `make generate` writes it into the operator package.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

# Classes whose own config Dagster checks when the instance loads them: the ones the operator renders, and the
# other run coordinator. Each is listed under every module it can be imported from (Dagster reads a module
# dagster.x as dagster._x; the operator does the same before looking a class up).
CONFIGURABLE_CLASSES: dict[str, tuple[str, ...]] = {
    "QueuedRunCoordinator": (
        "dagster",
        "dagster._core.run_coordinator",
        "dagster._core.run_coordinator.queued_run_coordinator",
    ),
    "DefaultRunCoordinator": (
        "dagster._core.run_coordinator",
        "dagster._core.run_coordinator.default_run_coordinator",
    ),
    "K8sRunLauncher": ("dagster_k8s", "dagster_k8s.launcher"),
    # spec.computeLogs.s3 (dagster-aws, the s3 extra)
    "S3ComputeLogManager": ("dagster_aws.s3", "dagster_aws.s3.compute_log_manager"),
}


def _type(snap: Any) -> dict[str, Any]:
    """One config type in the operator's terms: its kind and what that kind needs to check a value."""
    kind = snap.kind.value
    out: dict[str, Any] = {"kind": kind}
    if snap.fields is not None:
        out["fields"] = {f.name: {"type": f.type_key, "required": bool(f.is_required)} for f in snap.fields}
    if snap.field_aliases:
        out["aliases"] = dict(snap.field_aliases)
    if kind == "SCALAR":
        out["scalar"] = snap.scalar_kind.value if snap.scalar_kind is not None else None
    elif kind == "ENUM":
        out["values"] = [v.value for v in snap.enum_values or []]
    elif kind in ("ARRAY", "NONEABLE"):
        out["inner"] = snap.type_param_keys[0]
    elif kind == "MAP":
        out["key"], out["value"] = snap.type_param_keys
    elif kind == "SCALAR_UNION":
        out["scalar_type"], out["non_scalar_type"] = snap.type_param_keys
    if snap.given_name:
        out["name"] = snap.given_name
    return out


def schema() -> dict[str, Any]:
    """The instance schema, each configurable class's config schema, and the extra rules' bounds."""
    from dagster import __version__
    from dagster._config import resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster._utils.concurrency import get_max_concurrency_limit_value

    types: dict[str, dict[str, Any]] = {}

    def collect(config_schema: Any) -> str:
        config_type = resolve_to_config_type(config_schema)
        for key, snap in config_type.schema_snapshot.all_config_snaps_by_key.items():
            types[key] = _type(snap)
        return str(config_type.key)

    root = collect(dagster_instance_config_schema())
    classes: dict[str, str] = {}
    for name, modules in sorted(CONFIGURABLE_CLASSES.items()):
        found = {getattr(importlib.import_module(module), name) for module in modules}
        if len(found) != 1:
            raise RuntimeError(f"{name}: the modules {modules} hold different classes")
        key = collect(found.pop().config_type())
        classes.update({f"{module}.{name}": key for module in modules})
    return {
        "dagsterVersion": __version__,
        "root": root,
        "classes": dict(sorted(classes.items())),
        "maxConcurrencyLimit": get_max_concurrency_limit_value(),
        "types": dict(sorted(types.items())),
    }


def dumps() -> str:
    return json.dumps(schema(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps())
