"""translate.py: every spec field becomes the matching Dagster field; runs and checks execute in process."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from phlo_dagster.capabilities import (
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    DuplicateSpecError,
    MaterializeResult,
    PartitionSpec,
    ResourceSpec,
    RunSpec,
    SpecError,
    clear_capabilities,
    register_asset,
)
from phlo_dagster.translate import MAX_RUNTIME_TAG, SEVERITY_METADATA, TAGS_METADATA, DagsterAdapter

pytestmark = pytest.mark.unit

RAW = dg.AssetKey(["raw", "orders"])
MART = dg.AssetKey(["mart", "orders"])


def _ok(context):
    return MaterializeResult(metadata={"rows": 1})


def _build(*assets, checks=(), resources=()):
    return DagsterAdapter().build_definitions(assets=assets, checks=checks, resources=resources)


def _graph(defs: dg.Definitions):
    return defs.get_repository_def().asset_graph


def test_asset_fields_translated():
    spec = AssetSpec(
        key="raw.orders",
        group="ingestion",
        description="Orders",
        kinds={"python", "duckdb"},
        tags={"domain": "sales"},
        metadata={"owner": "team", "columns": ["a", "b"]},
        deps=["src.api"],
        run=RunSpec(fn=_ok, freshness_hours=(12, 24)),
    )
    node = _graph(_build(spec)).get(RAW)
    assert node.key == RAW
    assert node.group_name == "ingestion"
    assert node.description == "Orders"
    assert {"python", "duckdb"} <= set(node.kinds)
    assert node.tags["domain"] == "sales"
    assert node.metadata["owner"] in ("team", dg.TextMetadataValue("team"))
    assert node.parent_keys == {dg.AssetKey(["src", "api"])}
    fp = node.freshness_policy
    assert fp is not None
    assert fp.fail_window.to_timedelta() == timedelta(hours=24)
    assert fp.warn_window.to_timedelta() == timedelta(hours=12)


@pytest.mark.parametrize(
    ("kind", "cls", "first"),
    [
        ("daily", dg.DailyPartitionsDefinition, "2024-01-01"),
        ("hourly", dg.HourlyPartitionsDefinition, "2024-01-01-00:00"),
        ("weekly", dg.WeeklyPartitionsDefinition, "2024-01-07"),
        ("monthly", dg.MonthlyPartitionsDefinition, "2024-01-01"),
    ],
)
def test_time_partitions_keep_start_end_and_timezone(kind, cls, first):
    spec = AssetSpec(
        key="raw.orders",
        partitions=PartitionSpec(
            kind=kind, start_date=date(2024, 1, 1), end_date=date(2024, 3, 1), timezone="Europe/Paris"
        ),
        run=RunSpec(fn=_ok),
    )
    pdef = _graph(_build(spec)).get(RAW).partitions_def
    assert isinstance(pdef, cls)
    assert pdef.timezone == "Europe/Paris"
    assert pdef.start.strftime("%Y-%m-%d") in (first[:10], "2024-01-01")
    keys = pdef.get_partition_keys()
    assert keys[0] == first
    assert pdef.end is not None and pdef.end.strftime("%Y-%m-%d") == "2024-03-01"
    assert all(k < "2024-03-01" for k in keys)


def test_static_partitions():
    spec = AssetSpec(
        key="ref.regions", partitions=PartitionSpec(kind="static", values=["eu", "us"]), run=RunSpec(fn=_ok)
    )
    pdef = _graph(_build(spec)).get(dg.AssetKey(["ref", "regions"])).partitions_def
    assert isinstance(pdef, dg.StaticPartitionsDefinition)
    assert pdef.get_partition_keys() == ["eu", "us"]


def test_run_spec_retries_runtime_cron():
    spec = AssetSpec(
        key="raw.orders",
        partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="America/New_York"),
        run=RunSpec(fn=_ok, max_retries=3, retry_delay_seconds=7, max_runtime_seconds=120, cron="0 6 * * *"),
    )
    repo = _build(spec).get_repository_def()
    assets_def = repo.assets_defs_by_key[RAW]
    op = assets_def.node_def
    assert op.retry_policy == dg.RetryPolicy(max_retries=3, delay=7)
    assert op.tags[MAX_RUNTIME_TAG] == "120"
    job = repo.get_job("raw__orders_job")
    assert job.tags[MAX_RUNTIME_TAG] == "120"
    schedule = repo.get_schedule_def("raw__orders_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "raw__orders_job"


def test_partitioned_schedule_requests_last_partition():
    spec = AssetSpec(
        key="raw.orders",
        partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="UTC"),
        run=RunSpec(fn=_ok, cron="0 2 * * *"),
    )
    repo = _build(spec).get_repository_def()
    schedule = repo.get_schedule_def("raw__orders_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2024, 2, 10, 2, tzinfo=UTC),
            repository_def=repo,
        )
        data = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests or []] == ["2024-02-09"]


def test_no_cron_no_job():
    repo = _build(AssetSpec(key="raw.orders", run=RunSpec(fn=_ok))).get_repository_def()
    assert list(repo.schedule_defs) == []
    assert not repo.has_job("raw__orders_job")


def test_checks_blocking_severity_tags():
    spec = AssetSpec(
        key="raw.orders",
        run=RunSpec(fn=_ok),
        checks=[AssetCheckSpec(name="declared", asset_key="raw.orders", blocking=True, severity="ERROR")],
    )
    fn_check = AssetCheckSpec(
        name="positive",
        asset_key="raw.orders",
        fn=lambda c: True,
        blocking=False,
        severity="WARN",
        tags={"k": "v"},
    )
    graph = _graph(_build(spec, checks=[fn_check]))
    declared = graph.get_check_spec(dg.AssetCheckKey(RAW, "declared"))
    positive = graph.get_check_spec(dg.AssetCheckKey(RAW, "positive"))
    assert declared.blocking is True
    assert positive.blocking is False
    assert positive.metadata[SEVERITY_METADATA] == "WARN"
    assert declared.metadata[SEVERITY_METADATA] == "ERROR"
    assert positive.metadata[TAGS_METADATA] == {"k": "v"}


def _materialize(
    defs: dg.Definitions, selection=None, partition_key=None, resources=None, tags=None, instance=None
):
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
        selection=selection,
        partition_key=partition_key,
        resources=resources,
        tags=tags,
        instance=instance,
        raise_on_error=False,
    )


def test_run_receives_context_and_reports_results():
    seen = {}

    def run(context):
        seen["partition"] = context.partition_key
        seen["db"] = context.get_resource("db")
        seen["run_id"] = context.run_id
        seen["tags"] = dict(context.tags)
        seen["resources"] = dict(context.resources)
        context.logger.info("context logger reaches the run's event log")
        yield MaterializeResult(metadata={"rows": 5})
        yield CheckResult(check_name="has_rows", passed=True)

    spec = AssetSpec(
        key="raw.orders",
        partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1)),
        resources={"db"},
        run=RunSpec(fn=run),
        checks=[AssetCheckSpec(name="has_rows", asset_key="raw.orders")],
    )
    check = AssetCheckSpec(
        name="warn_check",
        asset_key="raw.orders",
        fn=lambda c: c.get_resource("db") == "nope",
        severity="WARN",
    )
    defs = _build(spec, checks=[check], resources=[ResourceSpec(name="db", resource="conn")])
    with dg.instance_for_test() as instance:
        result = _materialize(
            defs,
            partition_key="2024-01-03",
            resources={"db": "conn"},
            tags={"team": "sales"},
            instance=instance,
        )
        logged = [e.user_message for e in instance.all_logs(result.run_id) if not e.is_dagster_event]
    assert result.success
    assert "context logger reaches the run's event log" in logged
    assert seen["partition"] == "2024-01-03" and seen["db"] == "conn" and seen["run_id"] == result.run_id
    assert seen["tags"]["team"] == "sales" and seen["tags"]["dagster/partition"] == "2024-01-03"
    assert seen["resources"] == {"db": "conn"}
    mats = result.get_asset_materialization_events()
    assert mats[0].materialization.metadata["rows"] == dg.IntMetadataValue(5)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["has_rows"].passed is True
    assert evals["warn_check"].passed is False
    assert evals["warn_check"].severity == dg.AssetCheckSeverity.WARN


def test_blocking_check_stops_downstream():
    def run(context):
        yield MaterializeResult()
        yield CheckResult(check_name="gate", passed=False)

    upstream = AssetSpec(
        key="raw.orders",
        run=RunSpec(fn=run),
        checks=[AssetCheckSpec(name="gate", asset_key="raw.orders", blocking=True)],
    )
    downstream = AssetSpec(key="mart.orders", deps=["raw.orders"], run=RunSpec(fn=_ok))
    result = _materialize(_build(upstream, downstream))
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert RAW in materialized
    assert MART not in materialized


def test_blocking_function_check_stops_downstream():
    upstream = AssetSpec(key="raw.orders", run=RunSpec(fn=_ok))
    gate = AssetCheckSpec(name="gate", asset_key="raw.orders", fn=lambda c: False, blocking=True)
    downstream = AssetSpec(key="mart.orders", deps=["raw.orders"], run=RunSpec(fn=_ok))
    result = _materialize(_build(upstream, downstream, checks=[gate]))
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert RAW in materialized
    assert MART not in materialized


def test_non_blocking_warn_check_lets_downstream_run():
    upstream = AssetSpec(key="raw.orders", run=RunSpec(fn=_ok))
    check = AssetCheckSpec(
        name="soft", asset_key="raw.orders", fn=lambda c: False, blocking=False, severity="WARN"
    )
    downstream = AssetSpec(key="mart.orders", deps=["raw.orders"], run=RunSpec(fn=_ok))
    result = _materialize(_build(upstream, downstream, checks=[check]))
    assert MART in {e.asset_key for e in result.get_asset_materialization_events()}


def test_failed_status_fails_the_step():
    spec = AssetSpec(key="raw.orders", run=RunSpec(fn=lambda c: MaterializeResult(status="failed")))
    result = _materialize(_build(spec))
    assert not result.success


def test_check_returning_junk_fails_with_message():
    spec = AssetSpec(key="raw.orders", run=RunSpec(fn=_ok))
    check = AssetCheckSpec(name="junk", asset_key="raw.orders", fn=lambda c: "yes")
    result = _materialize(_build(spec, checks=[check]))
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures
    assert "return a CheckResult or a bool" in str(failures[0].step_failure_data.error.message)


def test_spec_without_run_is_an_external_asset():
    graph = _graph(_build(AssetSpec(key="src.api", description="upstream API")))
    node = graph.get(dg.AssetKey(["src", "api"]))
    assert not node.is_materializable


def test_duplicates_name_both_sources():
    clear_capabilities()
    a = register_asset(AssetSpec(key="raw.orders"), source="one.py:1")
    b = AssetSpec(key="raw.orders", description="again")
    with pytest.raises(DuplicateSpecError) as info:
        _build(a, b)
    assert "one.py:1" in str(info.value) and "assets[1]" in str(info.value)
    clear_capabilities()


def test_duplicate_resources_and_checks_name_both_places():
    with pytest.raises(
        DuplicateSpecError, match=r"resource 'db' is defined twice: in resources\[0\] and in resources\[1\]"
    ):
        _build(resources=[ResourceSpec(name="db", resource=1), ResourceSpec(name="db", resource=2)])
    clear_capabilities()
    spec = register_asset(
        AssetSpec(
            key="raw.orders", run=RunSpec(fn=_ok), checks=[AssetCheckSpec(name="c", asset_key="raw.orders")]
        ),
        source="orders.py:3",
    )
    again = AssetCheckSpec(name="c", asset_key="raw.orders", fn=lambda context: True)
    with pytest.raises(
        DuplicateSpecError, match=r"check 'c' on 'raw.orders' is defined twice: in orders.py:3 and in"
    ):
        _build(spec, checks=[again])
    clear_capabilities()


def test_unknown_resource_is_refused():
    spec = AssetSpec(key="raw.orders", resources={"warehouse"}, run=RunSpec(fn=_ok))
    with pytest.raises(SpecError, match=r"'raw.orders'.*field 'resources'.*warehouse"):
        _build(spec)


def test_declarative_check_without_run_is_refused():
    with pytest.raises(SpecError, match=r"field 'fn' is empty"):
        _build(AssetSpec(key="raw.orders"), checks=[AssetCheckSpec(name="c", asset_key="raw.orders")])


def test_equal_partition_specs_share_one_definition():
    part = PartitionSpec(kind="daily", start_date=date(2024, 1, 1))
    defs = _build(
        AssetSpec(key="a.one", partitions=part, run=RunSpec(fn=_ok)),
        AssetSpec(
            key="a.two",
            partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1)),
            run=RunSpec(fn=_ok),
        ),
    )
    graph = _graph(defs)
    assert (
        graph.get(dg.AssetKey(["a", "one"])).partitions_def
        is graph.get(dg.AssetKey(["a", "two"])).partitions_def
    )


def test_declared_check_keeps_its_severity_and_junk_results_fail():
    def run(context):
        yield MaterializeResult()
        yield CheckResult(check_name="soft", passed=False)

    spec = AssetSpec(
        key="raw.orders",
        run=RunSpec(fn=run),
        checks=[AssetCheckSpec(name="soft", asset_key="raw.orders", severity="WARN", blocking=False)],
    )
    result = _materialize(_build(spec))
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed is False and evaluation.severity == dg.AssetCheckSeverity.WARN

    junk = AssetSpec(key="raw.junk", run=RunSpec(fn=lambda c: "done"))
    failed = _materialize(_build(junk))
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    assert "produced a str" in str(failure.step_failure_data.error.message)
