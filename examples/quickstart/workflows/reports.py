"""A spec downstream of a dbt model: lineage runs ingestion spec -> dbt models -> this report."""

from __future__ import annotations

from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, RuntimeContext, register_asset


def summarize(context: RuntimeContext) -> MaterializeResult:
    """Total revenue over every day the dbt model daily_revenue holds."""
    with context.get_resource("warehouse").connect() as conn:
        days, revenue = conn.execute(
            "select count(*), coalesce(sum(revenue), 0) from daily_revenue"
        ).fetchone()
    return MaterializeResult(metadata={"days": int(days), "revenue": float(revenue)})


register_asset(
    AssetSpec(
        key="reports.revenue_summary",
        group="reports",
        description="Revenue over all loaded days, from the dbt model daily_revenue.",
        kinds={"python", "duckdb"},
        deps=["daily_revenue"],
        resources={"warehouse"},
        run=RunSpec(fn=summarize, max_retries=1, retry_delay_seconds=10),
    )
)
