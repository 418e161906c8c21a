"""A function check on raw.orders: amounts are positive (WARN, not blocking)."""

from __future__ import annotations

from phlo_dagster.capabilities import AssetCheckSpec, CheckResult, RuntimeContext, register_check


def amounts_positive(context: RuntimeContext) -> CheckResult:
    """Count rows of the partition (or the table) whose amount is not positive."""
    with context.get_resource("warehouse").connect() as conn:
        if context.partition_key:
            sql = "select count(*) from raw.orders where amount <= 0 and order_date = ?"
            bad = conn.execute(sql, [context.partition_key]).fetchone()[0]
        else:
            bad = conn.execute("select count(*) from raw.orders where amount <= 0").fetchone()[0]
    return CheckResult(passed=bad == 0, metadata={"non_positive_rows": bad})


register_check(
    AssetCheckSpec(
        name="amounts_positive",
        asset_key="raw.orders",
        fn=amounts_positive,
        blocking=False,
        severity="WARN",
        description="Every order amount is positive.",
        tags={"domain": "quality"},
    )
)
