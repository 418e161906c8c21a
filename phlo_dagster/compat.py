"""Accept Phlo 0.16 ``phlo.capabilities.specs`` dataclasses by attribute, without importing phlo.

Installed Phlo plugins return those dataclasses; converting them here lets them appear in ``defs`` unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from phlo_dagster.specs import (
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    MaterializeResult,
    PartitionSpec,
    ResourceSpec,
    RunSpec,
    SpecError,
)

__all__ = [
    "CAPABILITY_OVERRIDES_METADATA",
    "PHLO_DEFAULT_START_DATE",
    "PHLO_DEFAULT_TIMEZONE",
    "to_asset_spec",
    "to_check_result",
    "to_check_spec",
    "to_materialize_result",
    "to_resource_spec",
]

# Phlo 0.16's PartitionSpec has no end date and may omit the start; its adapter pinned daily partitions
# to this date, so a Phlo spec without a start keeps the partitions it had there.
PHLO_DEFAULT_START_DATE = date(2025, 1, 1)
# ... and to this time zone, when the spec names none.
PHLO_DEFAULT_TIMEZONE = "Europe/London"

_MISSING = object()
# Phlo's per-asset capability_overrides (e.g. {"table_store": "iceberg"}) are kept as asset metadata.
CAPABILITY_OVERRIDES_METADATA = "phlo/capability_overrides"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    value = getattr(obj, name, _MISSING)
    return default if value is _MISSING else value


def _what(obj: Any) -> str:
    ident = _get(obj, "key") or _get(obj, "name")
    cls = type(obj)
    return (
        f"{cls.__module__}.{cls.__qualname__} {ident!r}" if ident else f"{cls.__module__}.{cls.__qualname__}"
    )


def _need(obj: Any, *names: str) -> None:
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise SpecError(f"{_what(obj)}: not a capability spec (no attribute {', '.join(missing)})")


def _partition(obj: Any) -> PartitionSpec | None:
    if obj is None or isinstance(obj, PartitionSpec):
        return obj
    kind = _get(obj, "kind")
    values = _get(obj, "values") or ()
    start = _get(obj, "start_date")
    timezone = _get(obj, "timezone")
    if kind != "static":
        start = PHLO_DEFAULT_START_DATE if start is None else start
        timezone = PHLO_DEFAULT_TIMEZONE if timezone is None else timezone
    return PartitionSpec(
        kind=kind,
        start_date=start,
        end_date=_get(obj, "end_date"),
        timezone=timezone,
        values=tuple(values),
    )


def _run(obj: Any) -> RunSpec | None:
    if obj is None or isinstance(obj, RunSpec):
        return obj
    _need(obj, "fn")
    return RunSpec(
        fn=obj.fn,
        max_runtime_seconds=_get(obj, "max_runtime_seconds"),
        max_retries=_get(obj, "max_retries"),
        retry_delay_seconds=_get(obj, "retry_delay_seconds"),
        cron=_get(obj, "cron"),
        freshness_hours=_get(obj, "freshness_hours"),
    )


def to_check_spec(obj: Any) -> AssetCheckSpec:
    """Our AssetCheckSpec from ours or any object with Phlo's check attributes."""
    if isinstance(obj, AssetCheckSpec):
        return obj
    _need(obj, "name", "asset_key")
    blocking = _get(obj, "blocking", True)
    return AssetCheckSpec(
        name=obj.name,
        asset_key=obj.asset_key,
        fn=_get(obj, "fn"),
        blocking=True if blocking is None else blocking,
        description=_get(obj, "description"),
        severity=_get(obj, "severity"),
        tags=dict(_get(obj, "tags") or {}),
    )


def to_asset_spec(obj: Any) -> AssetSpec:
    """Our AssetSpec from ours or a Phlo-like object (its capability_overrides go to metadata)."""
    if isinstance(obj, AssetSpec):
        return obj
    _need(obj, "key")
    metadata = dict(_get(obj, "metadata") or {})
    overrides = dict(_get(obj, "capability_overrides") or {})
    if overrides:
        metadata.setdefault(CAPABILITY_OVERRIDES_METADATA, overrides)
    return AssetSpec(
        key=obj.key,
        group=_get(obj, "group"),
        description=_get(obj, "description"),
        kinds=frozenset(_get(obj, "kinds") or ()),
        tags=dict(_get(obj, "tags") or {}),
        metadata=metadata,
        partitions=_partition(_get(obj, "partitions")),
        deps=tuple(_get(obj, "deps") or ()),
        resources=frozenset(_get(obj, "resources") or ()),
        run=_run(_get(obj, "run")),
        checks=tuple(to_check_spec(c) for c in (_get(obj, "checks") or ())),
    )


def to_resource_spec(obj: Any) -> ResourceSpec:
    """Our ResourceSpec from ours or any object with ``name`` and ``resource``."""
    if isinstance(obj, ResourceSpec):
        return obj
    _need(obj, "name", "resource")
    return ResourceSpec(name=obj.name, resource=obj.resource)


def _meta(obj: Any) -> dict[str, Any]:
    value = _get(obj, "metadata") or {}
    return dict(value) if isinstance(value, Mapping) else {}


def to_materialize_result(obj: Any) -> MaterializeResult:
    """Our MaterializeResult from ours or a Phlo one."""
    if isinstance(obj, MaterializeResult):
        return obj
    return MaterializeResult(
        metadata=_meta(obj), status=_get(obj, "status"), asset_key=_get(obj, "asset_key")
    )


def to_check_result(obj: Any) -> CheckResult:
    """Our CheckResult from ours or a Phlo one (severity normalized to WARN/ERROR)."""
    if isinstance(obj, CheckResult):
        return obj
    return CheckResult(
        passed=bool(obj.passed),
        check_name=_get(obj, "check_name"),
        asset_key=_get(obj, "asset_key"),
        severity=_get(obj, "severity"),
        metadata=_meta(obj),
        description=_get(obj, "description"),
    )
