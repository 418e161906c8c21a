"""Capability specs into Dagster definitions: one AssetsDefinition per asset, built without decorators.

The ``@asset``/``@asset_check`` decorators re-inspect the function signature about a dozen times per asset; at
10,000 specs that dominates. Every spec shares one compute signature, so we build ``OpDefinition`` and
``AssetsDefinition`` directly (the same objects the decorators produce) and cache partitions definitions.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_checks_definition import AssetChecksDefinition

from phlo_dagster import compat
from phlo_dagster.capabilities import source_of
from phlo_dagster.specs import (
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    MaterializeResult,
    PartitionSpec,
    RuntimeContext,
    SpecError,
    claim,
)

__all__ = [
    "MAX_RUNTIME_TAG",
    "SEVERITY_METADATA",
    "TAGS_METADATA",
    "DagsterAdapter",
    "Translation",
    "asset_key",
    "gc_paused",
    "partitions_definition",
]


log = logging.getLogger(__name__)

MAX_RUNTIME_TAG = "dagster/max_runtime"
SEVERITY_METADATA = "phlo/severity"
TAGS_METADATA = "phlo/tags"
_FAILED_STATUSES = {"failure", "failed", "error"}
_DEFAULT_SCHEDULE_TZ = "UTC"


# Shared In/Out objects: resolving the Nothing/Any type per op is a measurable cost at 10,000 specs.
_NOTHING_IN = dg.In(dagster_type=dg.Nothing)
_NOTHING_OUT = dg.Out(dagster_type=dg.Nothing)
_ANY_OUT = dg.Out(dagster_type=None)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building: every full collection would rescan all definitions built so far,
    which makes large builds superlinear; the objects are long-lived, so nothing is lost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def asset_key(key: str) -> dg.AssetKey:
    """Dagster key for a spec key: 'raw.orders' -> AssetKey(['raw', 'orders'])."""
    return dg.AssetKey(key.split("."))


_PARTITIONS_CACHE: dict[tuple[Any, ...], dg.PartitionsDefinition] = {}


def partitions_definition(spec: PartitionSpec | None) -> dg.PartitionsDefinition | None:
    """Dagster partitions for a PartitionSpec; equal specs share one definition object."""
    if spec is None:
        return None
    cache_key = (spec.kind, spec.start_date, spec.end_date, spec.timezone, spec.values)
    cached = _PARTITIONS_CACHE.get(cache_key)
    if cached is not None:
        return cached
    result: dg.PartitionsDefinition
    if spec.kind == "static":
        result = dg.StaticPartitionsDefinition(list(spec.values))
    else:
        assert spec.start_date is not None  # guaranteed by PartitionSpec validation
        start = datetime.combine(spec.start_date, datetime.min.time())
        end = datetime.combine(spec.end_date, datetime.min.time()) if spec.end_date else None
        tz = spec.timezone
        if spec.kind == "daily":
            result = dg.DailyPartitionsDefinition(start_date=start, end_date=end, timezone=tz)
        elif spec.kind == "hourly":
            result = dg.HourlyPartitionsDefinition(start_date=start, end_date=end, timezone=tz)
        elif spec.kind == "weekly":
            result = dg.WeeklyPartitionsDefinition(start_date=start, end_date=end, timezone=tz)
        else:
            result = dg.MonthlyPartitionsDefinition(start_date=start, end_date=end, timezone=tz)
    _PARTITIONS_CACHE[cache_key] = result
    return result


def _jsonable(value: Any) -> Any:
    """Spec metadata values Dagster can store: MetadataValues and JSON-able values as is, else text."""
    if isinstance(value, dg.MetadataValue | str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        value = dict(value)
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in meta.items()}


def _check_metadata(spec: AssetCheckSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {SEVERITY_METADATA: spec.severity}
    if spec.tags:
        meta[TAGS_METADATA] = dict(spec.tags)
    return meta


def _severity(value: str | None, default: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if (value or default) == "WARN" else dg.AssetCheckSeverity.ERROR


def _context(
    spec_key: str,
    context: Any,
    resource_names: Iterable[str],
    capability_overrides: Mapping[str, str] | None = None,
) -> RuntimeContext:
    op_context = getattr(context, "op_execution_context", context)
    resources = op_context.resources
    return RuntimeContext(
        run_id=op_context.run_id,
        partition_key=op_context.partition_key if op_context.has_partition_key else None,
        tags=op_context.run.tags,
        logger=op_context.log,
        resources={name: getattr(resources, name) for name in resource_names},
        asset_key=spec_key,
        raw=context,
        capability_overrides=capability_overrides,
    )


def _overrides(spec: AssetSpec | None) -> dict[str, str]:
    """An asset's Phlo capability_overrides (kept in its metadata by compat.to_asset_spec)."""
    value = spec.metadata.get(compat.CAPABILITY_OVERRIDES_METADATA) if spec is not None else None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _as_iterable(result: Any) -> Iterable[Any]:
    """One result, a list, or a generator (pydantic models are iterable, so not by Iterable)."""
    if result is None:
        return ()
    if isinstance(result, list | tuple | Iterator):
        return result
    return (result,)


def _is_check_result(obj: Any) -> bool:
    return isinstance(obj, CheckResult) or (
        hasattr(obj, "passed") and not isinstance(obj, dg.AssetCheckResult)
    )


def _is_materialize_result(obj: Any) -> bool:
    return isinstance(obj, MaterializeResult) or hasattr(obj, "status") or hasattr(obj, "metadata")


def _asset_compute(
    spec: AssetSpec, key: dg.AssetKey, declared: Sequence[AssetCheckSpec]
) -> Callable[..., Iterator[Any]]:
    """The op body: run the spec's function and turn what it returns or yields into Dagster events."""
    run = spec.run
    assert run is not None
    fn = run.fn
    spec_key = spec.key
    resource_names = tuple(sorted(spec.resources))
    severities = {c.name: c.severity for c in declared}
    single_check = declared[0].name if len(declared) == 1 else None
    overrides = _overrides(spec)

    def compute(context, inputs):  # type: ignore[no-untyped-def]
        materialized = False
        for item in _as_iterable(fn(_context(spec_key, context, resource_names, overrides))):
            if isinstance(item, dg.MaterializeResult | dg.AssetCheckResult | dg.Output):
                materialized = materialized or not isinstance(item, dg.AssetCheckResult)
                yield item
            elif _is_check_result(item):
                res = compat.to_check_result(item)
                name = res.check_name or single_check
                if name is None:
                    raise dg.Failure(
                        description=f"asset {spec_key!r}: a CheckResult without check_name, and the asset "
                        f"declares {len(declared)} checks ({', '.join(severities) or 'none'})"
                    )
                yield dg.AssetCheckResult(
                    passed=res.passed,
                    asset_key=asset_key(res.asset_key) if res.asset_key else key,
                    check_name=name,
                    metadata=_metadata(res.metadata),
                    severity=_severity(res.severity, severities.get(name, "ERROR")),
                    description=res.description,
                )
            elif _is_materialize_result(item):
                res_m = compat.to_materialize_result(item)
                meta = _metadata(res_m.metadata)
                if res_m.status:
                    meta.setdefault("status", res_m.status)
                if (res_m.status or "").lower() in _FAILED_STATUSES:
                    raise dg.Failure(
                        description=f"asset {spec_key!r} reported status {res_m.status!r}", metadata=meta
                    )
                materialized = True
                yield dg.MaterializeResult(asset_key=key, metadata=meta)
            else:
                raise dg.Failure(
                    description=f"asset {spec_key!r}: the run function produced a {type(item).__name__}; "
                    "return or yield MaterializeResult and CheckResult objects"
                )
        if not materialized:
            yield dg.MaterializeResult(asset_key=key)

    return compute


def _check_compute(
    spec: AssetCheckSpec,
    key: dg.AssetKey,
    resource_names: tuple[str, ...],
    overrides: Mapping[str, str] | None = None,
) -> Callable[..., Iterator[Any]]:
    """The op body of a function check: call it, accept a CheckResult or a bool."""
    fn = spec.fn
    assert fn is not None
    spec_key = spec.asset_key
    name = spec.name
    default_severity = spec.severity

    def compute(context, inputs):  # type: ignore[no-untyped-def]
        result = fn(_context(spec_key, context, resource_names, overrides))
        if isinstance(result, dg.AssetCheckResult):
            yield result
            return
        if isinstance(result, bool):
            yield dg.AssetCheckResult(
                passed=result, asset_key=key, check_name=name, severity=_severity(None, default_severity)
            )
            return
        if result is None or not _is_check_result(result):
            raise dg.Failure(
                description=f"check {name!r} on {spec_key!r} returned {type(result).__name__}; "
                "return a CheckResult or a bool"
            )
        res = compat.to_check_result(result)
        yield dg.AssetCheckResult(
            passed=res.passed,
            asset_key=key,
            check_name=name,
            metadata=_metadata(res.metadata),
            severity=_severity(res.severity, default_severity),
            description=res.description,
        )

    return compute


@dataclass
class Translation:
    """Dagster objects made from specs, before they are joined with other definitions."""

    assets: list[dg.AssetsDefinition | dg.AssetSpec] = field(default_factory=list)
    asset_checks: list[dg.AssetChecksDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    sources: dict[dg.AssetKey, str] = field(default_factory=dict)

    def definitions(self) -> dg.Definitions:
        """One Definitions object holding everything translated."""
        return dg.Definitions(
            assets=self.assets,
            asset_checks=self.asset_checks,
            jobs=self.jobs,
            schedules=self.schedules,
            resources=self.resources,
        )


class DagsterAdapter:
    """The ``phlo.plugins.orchestrators`` entry: capability specs in, ``dagster.Definitions`` out.

    Cron is translated to a ScheduleDefinition (not AutomationCondition.on_cron): a schedule launches a run at
    the cron tick whatever the upstream state, carries the spec's run tags (dagster/max_runtime) on the run,
    picks the last complete partition for partitioned assets, and can be paused per asset in the UI; on_cron
    would also wait for every upstream to update and needs the automation sensor to evaluate all assets.
    """

    name = "dagster"

    def build_definitions(
        self,
        *,
        assets: Iterable[Any],
        checks: Iterable[Any] = (),
        resources: Iterable[Any] = (),
    ) -> dg.Definitions:
        """Definitions from asset, check and resource specs (ours or Phlo 0.16's, converted by attribute).

        The repository is resolved here (Dagster caches it on the Definitions), so errors surface now.
        """
        with gc_paused():
            defs = self.translate(assets=assets, checks=checks, resources=resources).definitions()
            defs.get_repository_def()
        return defs

    def translate(
        self,
        *,
        assets: Iterable[Any],
        checks: Iterable[Any] = (),
        resources: Iterable[Any] = (),
        extra_resource_keys: Iterable[str] = (),
    ) -> Translation:
        """Translate specs into Dagster objects; duplicate keys and unknown resources raise SpecError."""
        started = time.perf_counter()
        asset_specs = [compat.to_asset_spec(a) for a in assets]
        check_specs = [compat.to_check_spec(c) for c in checks]
        resource_specs = [compat.to_resource_spec(r) for r in resources]
        out = Translation()

        by_key: dict[str, AssetSpec] = {}
        asset_owners: dict[str, str] = {}
        for index, spec in enumerate(asset_specs):
            claim(asset_owners, spec.key, source_of(spec, f"assets[{index}]"), f"asset key {spec.key!r}")
            by_key[spec.key] = spec

        resource_owners: dict[str, str] = {}
        for index, rspec in enumerate(resource_specs):
            where = source_of(rspec, f"resources[{index}]")
            claim(resource_owners, rspec.name, where, f"resource {rspec.name!r}")
            out.resources[rspec.name] = rspec.resource
        known_resources = set(out.resources) | set(extra_resource_keys) | {"io_manager"}

        # Declarative checks (no fn) become outputs of their asset's op; function checks become their own op.
        declarative: dict[str, list[AssetCheckSpec]] = {}
        function_checks: list[AssetCheckSpec] = []
        check_owners: dict[tuple[str, str], str] = {}
        for cspec in [c for a in asset_specs for c in a.checks] + check_specs:
            # A check declared inside its AssetSpec was registered with it: it is where the asset is.
            where = source_of(cspec) or source_of(by_key.get(cspec.asset_key), "a check spec")
            claim(
                check_owners,
                (cspec.asset_key, cspec.name),
                where,
                f"check {cspec.name!r} on {cspec.asset_key!r}",
            )
            if cspec.fn is None:
                target = by_key.get(cspec.asset_key)
                if target is None or target.run is None:
                    raise SpecError(
                        f"AssetCheckSpec {cspec.name!r}: field 'fn' is empty, so the check must be reported "
                        f"by the run of asset {cspec.asset_key!r}, which has no run function here"
                    )
                declarative.setdefault(cspec.asset_key, []).append(cspec)
            else:
                function_checks.append(cspec)

        for spec in asset_specs:
            missing = spec.resources - known_resources
            if missing:
                raise SpecError(
                    f"AssetSpec {spec.key!r} ({source_of(spec, 'asset spec')}): field 'resources' names "
                    f"{', '.join(sorted(missing))}, which no ResourceSpec provides "
                    f"(available: {', '.join(sorted(out.resources)) or 'none'})"
                )
            key = asset_key(spec.key)
            out.sources[key] = source_of(spec, "an asset spec")
            self._add_asset(out, spec, key, declarative.get(spec.key, ()))

        for cspec in function_checks:
            # Check specs name no resources: a check sees the resources of the asset it checks.
            target = by_key.get(cspec.asset_key)
            out.asset_checks.append(
                self._check_definition(cspec, target.resources if target else frozenset(), _overrides(target))
            )

        log.debug(
            "translated %d assets, %d checks in %.3fs",
            len(asset_specs),
            len(check_owners),
            time.perf_counter() - started,
        )
        return out

    def _dagster_spec(self, spec: AssetSpec, key: dg.AssetKey) -> dg.AssetSpec:
        run = spec.run
        freshness = None
        window = run.freshness_window if run is not None else None
        if window is not None:
            warn, fail = window
            freshness = dg.FreshnessPolicy.time_window(
                fail_window=timedelta(hours=fail),
                warn_window=timedelta(hours=warn) if warn is not None else None,
            )
        return dg.AssetSpec(
            key=key,
            deps=[asset_key(d) for d in spec.deps],
            description=spec.description,
            metadata=_metadata(spec.metadata) if spec.metadata else None,
            group_name=spec.group,
            tags=dict(spec.tags) if spec.tags else None,
            kinds=set(spec.kinds) if spec.kinds else None,
            partitions_def=partitions_definition(spec.partitions),
            freshness_policy=freshness,
        )

    def _add_asset(
        self, out: Translation, spec: AssetSpec, key: dg.AssetKey, declared: Sequence[AssetCheckSpec]
    ) -> None:
        dspec = self._dagster_spec(spec, key)
        run = spec.run
        if run is None:
            out.assets.append(dspec)  # declared, materialized elsewhere: shows in lineage only
            return
        ident = key.to_python_identifier()
        check_by_output = {
            f"{ident}_{c.name}": dg.AssetCheckSpec(
                name=c.name,
                asset=key,
                description=c.description,
                blocking=c.blocking,
                metadata=_check_metadata(c),
            )
            for c in declared
        }
        outs: dict[str, dg.Out] = {"result": _NOTHING_OUT}
        for output_name in check_by_output:
            outs[output_name] = _NOTHING_OUT
        op_tags: dict[str, Any] = {}
        if run.max_runtime_seconds:
            op_tags[MAX_RUNTIME_TAG] = str(run.max_runtime_seconds)
        retry = (
            dg.RetryPolicy(max_retries=run.max_retries, delay=run.retry_delay_seconds)
            if run.max_retries
            else None
        )
        # Each dep is a Nothing input of the op, so a run orders (and blocking checks gate) upstream first.
        keys_by_input = {d.to_python_identifier(): d for d in (dep.asset_key for dep in dspec.deps)}
        op = dg.OpDefinition(
            compute_fn=_asset_compute(spec, key, declared),
            name=ident,
            ins={name: _NOTHING_IN for name in keys_by_input},
            outs=outs,
            description=spec.description,
            required_resource_keys=set(spec.resources),
            tags=op_tags or None,
            retry_policy=retry,
        )
        assets_def = dg.AssetsDefinition.dagster_internal_init(
            keys_by_input_name=keys_by_input,
            keys_by_output_name={"result": key},
            node_def=op,
            can_subset=False,
            resource_defs=None,
            backfill_policy=None,
            check_specs_by_output_name=check_by_output,
            specs=[dspec],
            hook_defs=None,
            is_subset=False,
            selected_asset_keys=None,
            selected_asset_check_keys=None,
            execution_type=None,
        )
        out.assets.append(assets_def)
        if run.cron or run.max_runtime_seconds:
            self._add_job(out, spec, key, ident, dspec.partitions_def)

    def _add_job(
        self,
        out: Translation,
        spec: AssetSpec,
        key: dg.AssetKey,
        ident: str,
        partitions_def: dg.PartitionsDefinition | None,
    ) -> None:
        """A job for the asset (its runs carry dagster/max_runtime); with cron, a schedule launching it."""
        run = spec.run
        assert run is not None
        run_tags = {MAX_RUNTIME_TAG: str(run.max_runtime_seconds)} if run.max_runtime_seconds else None
        job = dg.define_asset_job(
            name=f"{ident}_job",
            selection=dg.AssetSelection.assets(key),
            tags=run_tags,
            description=f"Materializes {spec.key} (from its RunSpec)",
        )
        out.jobs.append(job)
        if not run.cron:
            return
        tz = (spec.partitions.timezone if spec.partitions else None) or _DEFAULT_SCHEDULE_TZ
        if partitions_def is None:
            out.schedules.append(
                dg.ScheduleDefinition(
                    name=f"{ident}_schedule",
                    cron_schedule=run.cron,
                    job=job,
                    execution_timezone=tz,
                    tags=run_tags,
                    default_status=dg.DefaultScheduleStatus.RUNNING,
                )
            )
            return
        out.schedules.append(_partitioned_schedule(f"{ident}_schedule", run.cron, job, partitions_def, tz))

    def _check_definition(
        self,
        spec: AssetCheckSpec,
        resource_names: Set[str],
        overrides: Mapping[str, str] | None = None,
    ) -> dg.AssetChecksDefinition:
        key = asset_key(spec.asset_key)
        check = dg.AssetCheckSpec(
            name=spec.name,
            asset=key,
            description=spec.description,
            blocking=spec.blocking,
            metadata=_check_metadata(spec),
        )
        op = dg.OpDefinition(
            compute_fn=_check_compute(spec, key, tuple(sorted(resource_names)), overrides),
            name=f"{key.to_python_identifier()}_{spec.name}",
            ins={"asset": _NOTHING_IN},
            outs={"result": _ANY_OUT},
            description=spec.description,
            tags=dict(spec.tags) if spec.tags else None,
            required_resource_keys=set(resource_names),
        )
        checks: AssetChecksDefinition = AssetChecksDefinition.create(
            keys_by_input_name={"asset": key},
            node_def=op,
            check_specs_by_output_name={"result": check},
            can_subset=False,
        )
        return checks


def _partitioned_schedule(
    name: str, cron: str, job: Any, partitions_def: dg.PartitionsDefinition, tz: str
) -> dg.ScheduleDefinition:
    """A schedule that, at each tick, requests the latest complete partition (or every static value)."""

    def evaluate(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            with dg.partition_loading_context(effective_dt=context.scheduled_execution_time):
                last = partitions_def.get_last_partition_key()
            keys = [last] if last else []
        else:
            keys = list(partitions_def.get_partition_keys())
        for partition_key in keys:
            yield dg.RunRequest(run_key=partition_key, partition_key=partition_key)

    return dg.ScheduleDefinition(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_fn=evaluate,
        execution_timezone=tz,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
