"""The quickstart (examples/quickstart) written with Dagster's decorators, for bench/bench_runtime.py.

`dagster api grpc -m runtime_quickstart_native` loads it as the native side of the code-server cold start: the
same assets, checks, partitions, retry policies, freshness, resources, job, schedule and dbt models as
`phlo_dagster.definitions` builds from the quickstart's workflows, plugin and dbt project. The dbt manifest
is the one compiled for our side (BENCH_DBT_MANIFEST), so neither side compiles while it starts. No
`from __future__ import annotations` here: Dagster reads the context parameters' annotations as classes.
"""

import hashlib
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

DBT_DIR = Path(os.environ["BENCH_DBT_PROJECT_DIR"])
MANIFEST = Path(os.environ["BENCH_DBT_MANIFEST"])
DATA_DIR = Path(os.environ.get("PHLO_DATA_DIR", "/tmp"))
CUSTOMERS = ("acme", "globex", "initech", "umbrella")
REGIONS = {"eu": "Europe", "us": "United States", "apac": "Asia Pacific"}
ORDERS = dg.AssetKey(["raw", "orders"])
REGIONS_KEY = dg.AssetKey(["ref", "regions"])
DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")


class DuckDBWarehouse:
    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> Any:
        import duckdb

        return duckdb.connect(str(self.path))


def orders_for(day: date) -> list[tuple[str, str, float, date]]:
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest(), 16)
    return [
        (f"{day:%Y%m%d}-{i}", CUSTOMERS[(seed >> i) % 4], round(10 + (seed >> (2 * i)) % 90, 2), day)
        for i in range(3 + seed % 4)
    ]


@dg.asset(
    key=ORDERS,
    group_name="ingestion",
    description="Daily orders extract.",
    kinds={"python", "duckdb"},
    tags={"domain": "sales"},
    metadata={"owner": "data-team"},
    partitions_def=DAILY,
    required_resource_keys={"warehouse"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5),
    op_tags={"dagster/max_runtime": "600"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=48), warn_window=timedelta(hours=26)
    ),
    check_specs=[
        dg.AssetCheckSpec("has_rows", asset=ORDERS, description="The partition loaded at least one order.")
    ],
)
def raw_orders(context: dg.AssetExecutionContext):  # type: ignore[no-untyped-def]
    day = date.fromisoformat(context.partition_key)
    rows = orders_for(day)
    with context.resources.warehouse.connect() as conn:
        conn.execute("create schema if not exists raw")
        conn.execute(
            "create table if not exists raw.orders "
            "(order_id varchar, customer varchar, amount double, order_date date)"
        )
        conn.execute("delete from raw.orders where order_date = ?", [day])
        conn.executemany("insert into raw.orders values (?, ?, ?, ?)", rows)
    yield dg.MaterializeResult(metadata={"rows": len(rows), "day": day.isoformat()})
    yield dg.AssetCheckResult(check_name="has_rows", passed=bool(rows), metadata={"rows": len(rows)})


@dg.asset_check(
    asset=ORDERS,
    name="amounts_positive",
    blocking=False,
    description="Every order amount is positive.",
    required_resource_keys={"warehouse"},
)
def amounts_positive(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    with context.resources.warehouse.connect() as conn:
        bad = conn.execute("select count(*) from raw.orders where amount <= 0").fetchone()[0]
    return dg.AssetCheckResult(passed=bad == 0, severity=dg.AssetCheckSeverity.WARN)


@dg.asset(
    key=["reports", "revenue_summary"],
    group_name="reports",
    description="Revenue over all loaded days, from the dbt model daily_revenue.",
    kinds={"python", "duckdb"},
    deps=["daily_revenue"],
    required_resource_keys={"warehouse"},
    retry_policy=dg.RetryPolicy(max_retries=1, delay=10),
)
def revenue_summary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    with context.resources.warehouse.connect() as conn:
        days, revenue = conn.execute(
            "select count(*), coalesce(sum(revenue), 0) from daily_revenue"
        ).fetchone()
    return dg.MaterializeResult(metadata={"days": int(days), "revenue": float(revenue)})


@dg.asset(
    key=REGIONS_KEY,
    group_name="reference",
    description="Sales regions, one static partition each.",
    kinds={"python"},
    partitions_def=dg.StaticPartitionsDefinition(list(REGIONS)),
    required_resource_keys={"region_catalog"},
)
def regions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    region = context.partition_key
    return dg.MaterializeResult(metadata={"region": region, "name": context.resources.region_catalog[region]})


@dg.asset_check(
    asset=REGIONS_KEY, name="regions_named", blocking=True, description="Every region has a name."
)
def regions_named() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=all(REGIONS.values()))


@dbt_assets(manifest=MANIFEST, dagster_dbt_translator=DagsterDbtTranslator(), name="dbt_models")
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):  # type: ignore[no-untyped-def]
    yield from dbt.cli(["build"], context=context).stream()


orders_job = dg.define_asset_job(
    "raw__orders_job",
    selection=dg.AssetSelection.assets(ORDERS),
    tags={"dagster/max_runtime": "600"},
    partitions_def=DAILY,
)

defs = dg.Definitions(
    assets=[raw_orders, revenue_summary, regions, dbt_models],
    asset_checks=[amounts_positive, regions_named],
    jobs=[orders_job],
    schedules=[
        dg.build_schedule_from_partitioned_job(
            orders_job, hour_of_day=2, default_status=dg.DefaultScheduleStatus.RUNNING
        )
    ],
    resources={
        "warehouse": DuckDBWarehouse(DATA_DIR / "quickstart.duckdb"),
        "region_catalog": dg.ResourceDefinition.hardcoded_resource(dict(REGIONS)),
        "dbt": DbtCliResource(project_dir=str(DBT_DIR), profiles_dir=str(DBT_DIR)),
    },
)
