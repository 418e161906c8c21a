"""Definitions the metrics tests load as a code location.

A job whose blocking check fails, one that fails, one that succeeds, a freshness policy, a schedule, a sensor.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterInstance,
    Definitions,
    FreshnessPolicy,
    ScheduleDefinition,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)

from phlo_dagster.constants import DEFINITIONS_BUILD_SECONDS_METADATA_KEY

FRESH = FreshnessPolicy.time_window(fail_window=timedelta(hours=1), warn_window=timedelta(minutes=30))


@asset(key_prefix=["raw"], freshness_policy=FRESH)
def orders() -> int:
    return 1


@asset_check(asset=orders, blocking=True)
def orders_unique() -> AssetCheckResult:
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR)


@asset_check(asset=orders)
def orders_recent() -> AssetCheckResult:
    return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN)


@asset
def broken() -> None:
    raise RuntimeError("boom")


@asset
def customers() -> int:
    return 2


nightly = define_asset_job("nightly", selection=[orders])
breaks = define_asset_job("breaks", selection=[broken])
fine = define_asset_job("fine", selection=[customers])


@sensor(job=nightly)
def watch() -> SkipReason:
    return SkipReason("nothing new")


defs = Definitions(
    assets=[orders, broken, customers],
    asset_checks=[orders_unique, orders_recent],
    jobs=[nightly, breaks, fine],
    schedules=[ScheduleDefinition(name="daily", job=nightly, cron_schedule="0 6 * * *")],
    sensors=[watch],
    metadata={DEFINITIONS_BUILD_SECONDS_METADATA_KEY: 0.05},  # as phlo_dagster.definitions publishes it
)


def run(job: str, instance: DagsterInstance) -> bool:
    """Execute one of the jobs in process against the instance; whether the run succeeded."""
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False).success
