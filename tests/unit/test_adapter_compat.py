"""Conversion by attribute: any object shaped like Phlo's specs works (the real phlo 0.16.2 is tested in
tests/integration/test_compat_phlo016.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from phlo_dagster import compat
from phlo_dagster.capabilities import AssetSpec, SpecError


@dataclass(frozen=True)
class _Partition:
    kind: str
    start_date: date | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class _Check:
    name: str
    asset_key: str
    fn: Any = None
    blocking: bool = True
    description: str | None = None
    severity: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Asset:
    key: str
    group: str | None
    description: str | None
    kinds: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    capability_overrides: dict[str, str] = field(default_factory=dict)
    partitions: _Partition | None = None
    deps: list[str] = field(default_factory=list)
    resources: set[str] = field(default_factory=set)
    run: Any = None
    checks: list[_Check] = field(default_factory=list)


pytestmark = pytest.mark.unit


def test_asset_by_attribute():
    obj = _Asset(
        key="raw.orders",
        group="g",
        description="d",
        kinds={"python"},
        capability_overrides={"table_store": "delta"},
        partitions=_Partition(kind="daily"),
        deps=["src.api"],
        checks=[_Check(name="c", asset_key="raw.orders", severity="critical")],
    )
    spec = compat.to_asset_spec(obj)
    assert isinstance(spec, AssetSpec)
    assert spec.key == "raw.orders" and spec.deps == ("src.api",)
    assert spec.metadata[compat.CAPABILITY_OVERRIDES_METADATA] == {"table_store": "delta"}
    assert spec.partitions is not None and spec.partitions.start_date == compat.PHLO_DEFAULT_START_DATE
    assert spec.checks[0].severity == "ERROR"
    assert compat.to_asset_spec(spec) is spec


def test_not_a_spec_names_the_object():
    with pytest.raises(SpecError, match=r"not a capability spec \(no attribute key\)"):
        compat.to_asset_spec(object())


def test_bad_phlo_spec_names_spec_and_field():
    with pytest.raises(SpecError, match=r"PartitionSpec.*field 'kind'"):
        compat.to_asset_spec(
            _Asset(key="a", group=None, description=None, partitions=_Partition(kind="yearly"))
        )
