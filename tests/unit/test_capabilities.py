"""Capability specs: validation names spec and field, immutability, registry and duplicates."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from phlo_dagster.capabilities import (
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    DuplicateSpecError,
    PartitionSpec,
    ResourceSpec,
    RunSpec,
    RuntimeContext,
    SpecError,
    clear_capabilities,
    register_asset,
    register_check,
    register_resource,
    registry,
    source_of,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_registry():
    clear_capabilities()
    yield
    clear_capabilities()


def _noop(context: RuntimeContext) -> None:
    return None


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: AssetSpec(key="raw orders"), ["AssetSpec 'raw orders'", "field 'key'"]),
        (lambda: AssetSpec(key="raw.orders", kinds=3), ["AssetSpec 'raw.orders'", "field 'kinds'"]),
        (
            lambda: PartitionSpec(kind="yearly", start_date=date(2024, 1, 1)),
            ["PartitionSpec", "field 'kind'"],
        ),
        (lambda: PartitionSpec(kind="daily"), ["PartitionSpec 'daily'", "needs 'start_date'"]),
        (lambda: PartitionSpec(kind="static"), ["'values'"]),
        (
            lambda: PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="Mars/Base"),
            ["field 'timezone'", "Mars/Base"],
        ),
        (
            lambda: PartitionSpec(kind="daily", start_date=date(2024, 2, 1), end_date=date(2024, 1, 1)),
            ["'end_date' must be after 'start_date'"],
        ),
        (lambda: RunSpec(fn=_noop, cron="every day"), ["RunSpec", "field 'cron'"]),
        (lambda: RunSpec(fn=_noop, max_retries=-1), ["RunSpec", "field 'max_retries'"]),
        (lambda: RunSpec(fn=_noop, freshness_hours=(48, 24)), ["field 'freshness_hours'"]),
        (
            lambda: AssetCheckSpec(name="c", asset_key="a", severity="fatal"),
            ["AssetCheckSpec 'c'", "field 'severity'"],
        ),
        (
            lambda: AssetCheckSpec(name="bad name", asset_key="a"),
            ["AssetCheckSpec 'bad name'", "field 'name'"],
        ),
        (lambda: AssetSpec(key="a", unknown=1), ["AssetSpec 'a'", "field 'unknown'"]),
        (
            lambda: AssetSpec(key="a", checks=[AssetCheckSpec(name="c", asset_key="b")]),
            ["AssetSpec 'a'", "targets 'b'"],
        ),
        (lambda: AssetSpec(key="a", deps=["a"]), ["lists the asset itself"]),
        (lambda: AssetSpec(key="a", tags={"a/b/c": "v"}), ["AssetSpec 'a'", "field 'tags'", "'a/b/c'"]),
        (lambda: AssetSpec(key="a", tags={"team": "has space"}), ["field 'tags'", "'has space'"]),
    ],
)
def test_bad_spec_names_spec_and_field(build, expected):
    with pytest.raises(SpecError) as info:
        build()
    for fragment in expected:
        assert fragment in str(info.value)


def test_nested_error_names_the_outer_field():
    with pytest.raises(SpecError) as info:
        AssetSpec(key="raw.orders", partitions={"kind": "daily"})
    assert "AssetSpec 'raw.orders'" in str(info.value)
    assert "field 'partitions'" in str(info.value)


def test_specs_are_immutable():
    spec = AssetSpec(key="raw.orders", tags={"a": "b"}, metadata={"m": 1}, deps=["x.y"], kinds={"python"})
    with pytest.raises(ValidationError):
        spec.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.tags["c"] = "d"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.metadata["n"] = 2  # type: ignore[index]
    assert spec.deps == ("x.y",)
    assert spec.kinds == frozenset({"python"})


def test_normalization():
    run = RunSpec(fn=_noop, freshness_hours=24, cron=" 0 6 * * * ")
    assert run.freshness_hours == (None, 24.0)
    assert run.cron == "0 6 * * *"
    assert RunSpec(fn=_noop, freshness_hours=(12, 24)).freshness_hours == (12.0, 24.0)
    assert AssetCheckSpec(name="c", asset_key="a", severity="warning").severity == "WARN"
    assert AssetCheckSpec(name="c", asset_key="a", severity="critical").severity == "ERROR"
    assert AssetCheckSpec(name="c", asset_key="a").severity == "ERROR"
    assert CheckResult(passed=False, severity="warn").severity == "WARN"
    assert CheckResult(passed=True).severity is None
    static = PartitionSpec(kind="static", values=["eu", "us"])
    assert static.values == ("eu", "us")


def test_registry_keeps_order_and_source_and_clears():
    a = register_asset(AssetSpec(key="raw.a"))
    register_asset(AssetSpec(key="raw.b"))
    register_check(AssetCheckSpec(name="c", asset_key="raw.a", fn=_noop))
    register_resource(ResourceSpec(name="db", resource=object()))
    snap = registry()
    assert [s.key for s in snap.assets] == ["raw.a", "raw.b"]
    assert [c.name for c in snap.checks] == ["c"]
    assert [r.name for r in snap.resources] == ["db"]
    assert source_of(a).startswith(__file__)
    clear_capabilities()
    snap = registry()
    assert snap.assets == () and snap.checks == () and snap.resources == ()


def test_duplicates_name_both_sources():
    register_asset(AssetSpec(key="raw.a"), source="first.py:1")
    with pytest.raises(DuplicateSpecError) as info:
        register_asset(AssetSpec(key="raw.a"), source="second.py:9")
    assert "first.py:1" in str(info.value) and "second.py:9" in str(info.value)
    register_resource(ResourceSpec(name="db", resource=1), source="r1")
    with pytest.raises(DuplicateSpecError, match=r"r1.*r2"):
        register_resource(ResourceSpec(name="db", resource=2), source="r2")
    register_check(AssetCheckSpec(name="c", asset_key="raw.a"), source="c1")
    with pytest.raises(DuplicateSpecError, match=r"c1.*c2"):
        register_check(AssetCheckSpec(name="c", asset_key="raw.a"), source="c2")


def test_same_source_registers_again_without_error():
    register_asset(AssetSpec(key="raw.a", description="old"), source="mod.py:3")
    register_asset(AssetSpec(key="raw.a", description="new"), source="mod.py:3")
    assert [s.description for s in registry().assets] == ["new"]


def test_register_refuses_non_specs():
    with pytest.raises(SpecError, match=r"register_asset expects a capability spec .*builtins.dict"):
        register_asset({"key": "a"})


def test_runtime_context_resources():
    ctx = RuntimeContext(
        run_id="r", partition_key="2024-01-01", tags={"t": "v"}, logger=None, resources={"db": 1}
    )
    assert ctx.get_resource("db") == 1
    assert ctx.tags["t"] == "v"
    with pytest.raises(KeyError, match=r"'warehouse' is not available.*declared: db"):
        ctx.get_resource("warehouse")


def test_public_contract_names_and_fields():
    """Acceptance tests outside this repository import exactly these names and build specs by these fields."""
    import phlo_dagster.capabilities as capabilities

    for name in (
        "AssetSpec",
        "AssetCheckSpec",
        "ResourceSpec",
        "PartitionSpec",
        "RunSpec",
        "MaterializeResult",
        "CheckResult",
        "RuntimeContext",
        "register_asset",
        "register_check",
        "register_resource",
        "clear_capabilities",
    ):
        assert name in capabilities.__all__ and callable(getattr(capabilities, name)), name
    fields = {
        "AssetSpec": "key group description kinds tags metadata partitions deps resources run checks",
        "RunSpec": "fn max_runtime_seconds max_retries retry_delay_seconds cron freshness_hours",
        "AssetCheckSpec": "name asset_key fn blocking description severity tags",
        "ResourceSpec": "name resource",
        "PartitionSpec": "kind start_date end_date timezone values",
    }
    for model, names in fields.items():
        assert list(getattr(capabilities, model).model_fields) == names.split(), model
    ctx = RuntimeContext(run_id="r", partition_key=None, tags={}, logger="log", resources={"db": 1})
    assert (ctx.run_id, ctx.partition_key, dict(ctx.tags), ctx.logger) == ("r", None, {}, "log")
    assert dict(ctx.resources) == {"db": 1} and ctx.get_resource("db") == 1
