"""What workflow modules and plugins import: the capability specs (specs.py) and the registry they fill.

``register_*`` accept our specs or Phlo's (converted by compat.py); discovery reads :func:`registry` and
translate.py turns the specs into Dagster objects.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

from phlo_dagster import compat
from phlo_dagster.specs import (
    LOG_FIELDS_ATTR,
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    DuplicateSpecError,
    MaterializeResult,
    PartitionSpec,
    ResourceSpec,
    Routing,
    RunSpec,
    RuntimeContext,
    SpecError,
    StructuredLogger,
)

__all__ = [
    "LOG_FIELDS_ATTR",
    "AssetCheckSpec",
    "AssetSpec",
    "CheckResult",
    "DuplicateSpecError",
    "MaterializeResult",
    "PartitionSpec",
    "Registry",
    "ResourceSpec",
    "Routing",
    "RunSpec",
    "RuntimeContext",
    "SpecError",
    "StructuredLogger",
    "clear_capabilities",
    "register_asset",
    "register_check",
    "register_resource",
    "registry",
    "source_of",
]


# --- registry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """A snapshot of registered specs, in registration order."""

    assets: tuple[AssetSpec, ...]
    checks: tuple[AssetCheckSpec, ...]
    resources: tuple[ResourceSpec, ...]


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.assets: dict[str, tuple[AssetSpec, str]] = {}
        self.checks: dict[tuple[str, str], tuple[AssetCheckSpec, str]] = {}
        self.resources: dict[str, tuple[ResourceSpec, str]] = {}
        self.sources: dict[int, str] = {}


_STORE = _Store()
_S = TypeVar("_S")


def _caller(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _remember(spec: Any, source: str) -> None:
    _STORE.sources[id(spec)] = source


def source_of(spec: Any, default: str = "") -> str:
    """Where a registered spec came from (file:line or plugin entry point), for error messages."""
    return _STORE.sources.get(id(spec), default)


def _put(table: dict[Any, tuple[Any, str]], key: Any, spec: _S, where: str, what: str) -> _S:
    """Store spec under key; the same key from another source raises DuplicateSpecError naming both."""
    with _STORE.lock:
        if key in table and table[key][1] != where:
            if table[key][0] is spec:  # one spec seen through two channels (Phlo's registry and a provider)
                return spec
            raise DuplicateSpecError.defined_twice(what, table[key][1], where)
        table[key] = (spec, where)
        _remember(spec, where)
    return spec


def _ours(spec: Any, converter: str, fn: str) -> Any:
    """Our spec, or one converted from a Phlo spec object (``phlo.capabilities.specs``) by its attributes."""
    try:
        return getattr(compat, converter)(spec)
    except SpecError as exc:
        cls = type(spec)
        raise SpecError(
            f"{fn} expects a capability spec (phlo_dagster.capabilities or Phlo's), "
            f"got {cls.__module__}.{cls.__qualname__}: {exc}"
        ) from None


def register_asset(spec: Any, *, source: str | None = None) -> AssetSpec:
    """Register an asset spec; the same key from another place raises DuplicateSpecError naming both.

    Registering again from the same source (a module imported twice) replaces the earlier spec.
    """
    asset: AssetSpec = _ours(spec, "to_asset_spec", "register_asset")
    return _put(_STORE.assets, asset.key, asset, source or _caller(), f"asset key {asset.key!r}")


def register_check(spec: Any, *, source: str | None = None) -> AssetCheckSpec:
    """Register a check spec; the same (asset, name) twice raises DuplicateSpecError naming both."""
    check: AssetCheckSpec = _ours(spec, "to_check_spec", "register_check")
    key = (check.asset_key, check.name)
    what = f"check {check.name!r} on {check.asset_key!r}"
    return _put(_STORE.checks, key, check, source or _caller(), what)


def register_resource(spec: Any, *, source: str | None = None) -> ResourceSpec:
    """Register a resource spec; the same name twice raises DuplicateSpecError naming both."""
    resource: ResourceSpec = _ours(spec, "to_resource_spec", "register_resource")
    return _put(_STORE.resources, resource.name, resource, source or _caller(), f"resource {resource.name!r}")


def clear_capabilities() -> None:
    """Forget every registered spec, so discovery can run again from scratch."""
    with _STORE.lock:
        _STORE.assets.clear()
        _STORE.checks.clear()
        _STORE.resources.clear()
        _STORE.sources.clear()


def registry() -> Registry:
    """The specs registered so far."""
    with _STORE.lock:
        return Registry(
            assets=tuple(s for s, _ in _STORE.assets.values()),
            checks=tuple(s for s, _ in _STORE.checks.values()),
            resources=tuple(s for s, _ in _STORE.resources.values()),
        )
