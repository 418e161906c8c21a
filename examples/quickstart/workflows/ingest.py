"""A partitioned ingestion asset: one day of orders per partition into raw.orders (the dbt source)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import date

from phlo_dagster.capabilities import (
    AssetCheckSpec,
    AssetSpec,
    CheckResult,
    MaterializeResult,
    PartitionSpec,
    RunSpec,
    RuntimeContext,
    register_asset,
)

CUSTOMERS = ("acme", "globex", "initech", "umbrella")


def orders_for(day: date) -> list[tuple[str, str, float, date]]:
    """Deterministic fake orders for a day (3 to 6 of them), standing in for an API extract."""
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest(), 16)
    count = 3 + seed % 4
    return [
        (
            f"{day:%Y%m%d}-{i}",
            CUSTOMERS[(seed >> i) % len(CUSTOMERS)],
            round(10 + (seed >> (2 * i)) % 90, 2),
            day,
        )
        for i in range(count)
    ]


def load_orders(context: RuntimeContext) -> Iterator[MaterializeResult | CheckResult]:
    """Replace the partition's day in raw.orders, then report the row count and a has-rows check."""
    assert context.partition_key is not None
    day = date.fromisoformat(context.partition_key)
    rows = orders_for(day)
    with context.get_resource("warehouse").connect() as conn:
        conn.execute("create schema if not exists raw")
        conn.execute(
            "create table if not exists raw.orders "
            "(order_id varchar, customer varchar, amount double, order_date date)"
        )
        conn.execute("delete from raw.orders where order_date = ?", [day])
        conn.executemany("insert into raw.orders values (?, ?, ?, ?)", rows)
    context.logger.info(f"loaded {len(rows)} orders for {day}")
    yield MaterializeResult(metadata={"rows": len(rows), "day": day.isoformat()})
    yield CheckResult(check_name="has_rows", passed=len(rows) > 0, metadata={"rows": len(rows)})


orders = register_asset(
    AssetSpec(
        key="raw.orders",
        group="ingestion",
        description="Daily orders extract.",
        kinds={"python", "duckdb"},
        tags={"domain": "sales"},
        metadata={"owner": "data-team"},
        partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="UTC"),
        resources={"warehouse"},
        run=RunSpec(
            fn=load_orders,
            max_retries=2,
            retry_delay_seconds=5,
            max_runtime_seconds=600,
            # QUICKSTART_ORDERS_CRON: the end-to-end tests tick the schedule every minute; users keep 02:00.
            cron=os.environ.get("QUICKSTART_ORDERS_CRON", "0 2 * * *"),
            freshness_hours=(26, 48),
        ),
        checks=[
            AssetCheckSpec(
                name="has_rows",
                asset_key="raw.orders",
                description="The partition loaded at least one order.",
                blocking=True,
            )
        ],
    )
)
