"""The code location: ``dagster api grpc -m phlo_dagster.definitions`` loads ``defs`` from here.

``defs`` joins plugin specs, workflow specs, plain Dagster objects from workflow modules and, with
PHLO_DBT_ENABLED, the dbt models of the compiled manifest. Any failure stops the load with a one-line cause.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dagster as dg

from phlo_dagster.adapter import DagsterAdapter, gc_paused
from phlo_dagster.capabilities import DuplicateSpecError, SpecError
from phlo_dagster.dbt import DbtCompileError
from phlo_dagster.discovery import DagsterObjects, DiscoveryError, discover
from phlo_dagster.settings import Settings, SettingsError, load_settings

__all__ = ["BUILD_SECONDS_METADATA", "LOAD_ERRORS", "build_definitions", "defs"]

# What build_definitions raises for bad user input; each message is one line naming the input (for the CLI).
LOAD_ERRORS: tuple[type[Exception], ...] = (
    DiscoveryError,
    SpecError,
    DuplicateSpecError,
    DbtCompileError,
    SettingsError,
)

log = logging.getLogger(__name__)

BUILD_SECONDS_METADATA = "phlo/definitions_build_seconds"


def _keys_of(obj: Any) -> list[dg.AssetKey]:
    if isinstance(obj, dg.AssetsDefinition):
        return list(obj.keys)
    key = getattr(obj, "key", None)
    return [key] if isinstance(key, dg.AssetKey) else []


def _refuse_duplicates(owned: dict[dg.AssetKey, str], objs: list[Any], source: Any) -> None:
    for obj in objs:
        for key in _keys_of(obj):
            where = source(obj) if callable(source) else source.get(key, "?")
            if key in owned:
                raise DuplicateSpecError(
                    f"asset key {key.to_user_string()!r} is defined twice: in {owned[key]} and in {where}"
                )
            owned[key] = where


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Discover and translate everything into one resolved Definitions (build time in its metadata)."""
    with gc_paused():
        defs = _build(settings)
        defs.get_repository_def()  # resolved now: cached by Dagster, and errors surface at load
    return defs


def _build(settings: Settings | None) -> dg.Definitions:
    started = time.perf_counter()
    settings = settings or load_settings()
    settings.ensure_data_dir()
    found = discover(settings)
    objects: DagsterObjects = found.dagster_objects

    dbt_assets: list[Any] = []
    dbt_resources: dict[str, Any] = {}
    dbt_sources: dict[Any, str] = {}
    if settings.dbt_enabled:
        from phlo_dagster.dbt import dbt_definitions

        dbt_assets, dbt_resources, dbt_sources = dbt_definitions(settings)

    plain_resource_keys: set[str] = set(dbt_resources)
    for d in objects.definitions:
        plain_resource_keys |= set(d.resources or {})
    translation = DagsterAdapter().translate(
        assets=found.assets,
        checks=found.checks,
        resources=found.resources,
        extra_resource_keys=plain_resource_keys,
    )

    owned: dict[dg.AssetKey, str] = dict(translation.sources)
    _refuse_duplicates(owned, objects.assets, objects.source)
    _refuse_duplicates(owned, dbt_assets, dbt_sources)

    resources = {**dbt_resources, **translation.resources}
    elapsed = time.perf_counter() - started
    combined = dg.Definitions(
        assets=[*translation.assets, *objects.assets, *dbt_assets],
        asset_checks=[*translation.asset_checks, *objects.asset_checks],
        schedules=[*translation.schedules, *objects.schedules],
        sensors=objects.sensors,
        jobs=[*translation.jobs, *objects.jobs],
        resources=resources,
        metadata={
            BUILD_SECONDS_METADATA: round(elapsed, 6),
            "phlo/code_location": settings.code_location_name,
            "phlo/asset_specs": len(found.assets),
            "phlo/workflow_modules": len(found.modules),
        },
    )
    if objects.definitions:
        combined = dg.Definitions.merge(combined, *objects.definitions)
    log.info(
        "phlo definitions: %d specs, %d plain assets, %d dbt assets in %.3fs",
        len(found.assets),
        len(objects.assets),
        len(dbt_assets),
        elapsed,
    )
    return combined


defs = build_definitions()
