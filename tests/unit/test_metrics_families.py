"""The families of issue 13 against a real SQLite instance and definitions loaded into a real workspace.

The definitions of tests/metrics_defs.py are loaded in process as a code location (as the webserver loads its
workspace), so the series the collector starts at 0 come from the same snapshots the webserver reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    FreshnessPolicy,
    instance_for_test,
)
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RegisteredCodeLocationOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import InstigatorTick, TickData, TickStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phlo_dagster.metrics import DagsterCollector, freshness_state, registry_for, workspace_locations
from tests.metrics_defs import run

pytestmark = pytest.mark.unit

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    with instance_for_test(temp_dir=str(tmp_path)) as inst:
        yield inst


@pytest.fixture
def workspace(instance: DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="tests.metrics_defs", attribute="defs"), location_name="phlo"
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def scrape(collector: DagsterCollector) -> Samples:
    text = generate_latest(registry_for(collector)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def test_series_of_the_loaded_definitions_start_at_zero_so_the_first_failure_is_an_increase(
    instance: DagsterInstance, workspace: WorkspaceProcessContext
) -> None:
    """Mutation (2026-12-06): without the zero series in DagsterCollector._run_families/_event_families/
    _tick_families the `before` lookups return None and this test fails."""
    collector = DagsterCollector(instance, locations=workspace_locations(workspace))
    before = scrape(collector)
    assert not [name for name, _labels in before if name.endswith("_created")]
    for status in ("SUCCESS", "FAILURE", "CANCELED"):
        for job in ("nightly", "breaks", "fine", "__ASSET_JOB"):
            assert get(before, "dagster_runs_finished_total", status=status, job=job) == 0
            assert get(before, "dagster_run_duration_seconds_count", job=job, status=status) == 0
    assert get(before, "dagster_asset_materializations_total", asset_key="raw/orders") == 0
    assert get(before, "dagster_asset_materializations_total", asset_key="broken") == 0
    for outcome in ("passed", "failed"):
        for severity in ("warn", "error"):
            unique = {"asset_key": "raw/orders", "check_name": "orders_unique", "blocking": "true"}
            recent = {"asset_key": "raw/orders", "check_name": "orders_recent", "blocking": "false"}
            for labels in (unique, recent):
                value = get(
                    before,
                    "dagster_asset_check_evaluations_total",
                    outcome=outcome,
                    severity=severity,
                    **labels,
                )
                assert value == 0, labels
    for kind, name in (("schedule", "daily"), ("sensor", "watch")):
        for status in ("SUCCESS", "SKIPPED", "FAILURE"):
            assert get(before, "dagster_instigator_ticks_total", type=kind, name=name, status=status) == 0

    assert not run("nightly", instance)  # the asset materializes, then its blocking check fails the run
    assert not run("breaks", instance)
    after = scrape(collector)
    assert get(after, "dagster_runs_finished_total", status="FAILURE", job="breaks") == 1
    assert get(after, "dagster_runs_finished_total", status="FAILURE", job="nightly") == 1
    failed = {"outcome": "failed", "severity": "error", "blocking": "true"}
    labels = {"asset_key": "raw/orders", "check_name": "orders_unique", **failed}
    assert get(after, "dagster_asset_check_evaluations_total", **labels) == 1
    assert get(after, "dagster_asset_materializations_total", asset_key="raw/orders") == 1


def test_step_durations_by_job_step_and_status(
    instance: DagsterInstance, workspace: WorkspaceProcessContext
) -> None:
    """Steps are read per run that finishes after the history was read (a run before it adds none).

    Mutation (2026-12-06): calling read_steps with no runs leaves every step series absent and fails here."""
    collector = DagsterCollector(instance, locations=workspace_locations(workspace))
    run("nightly", instance)
    history = scrape(collector)
    assert not [name for name, _labels in history if name.startswith("dagster_step_duration")]
    run("nightly", instance)
    assert not run("breaks", instance)
    samples = scrape(collector)
    ok = {"job": "nightly", "step": "raw__orders", "status": "SUCCESS"}
    assert get(samples, "dagster_step_duration_seconds_count", **ok) == 1
    assert (get(samples, "dagster_step_duration_seconds_sum", **ok) or 0) > 0
    assert (
        get(samples, "dagster_step_duration_seconds_count", job="breaks", step="broken", status="FAILURE")
        == 1
    )
    check = {"job": "nightly", "step": "raw__orders_orders_unique", "status": "FAILURE"}
    assert get(samples, "dagster_step_duration_seconds_count", **check) == 1

    run("nightly", instance)  # read incrementally: one more, not the history again
    again = scrape(collector)
    assert get(again, "dagster_step_duration_seconds_count", **ok) == 2


def test_last_materialization_and_freshness_state_follow_the_policy(
    instance: DagsterInstance, workspace: WorkspaceProcessContext
) -> None:
    """Mutation (2026-12-06): freshness_state returning "pass" for any age fails the warn and fail steps."""
    clock = Clock()
    collector = DagsterCollector(instance, locations=workspace_locations(workspace), clock=clock)

    def state(samples: Samples) -> str:
        current = [
            s
            for s in ("pass", "warn", "fail", "unknown")
            if get(samples, "dagster_asset_freshness_state", asset_key="raw/orders", state=s) == 1
        ]
        assert len(current) == 1, current
        assert get(samples, "dagster_asset_freshness_state", asset_key="broken", state="unknown") is None
        return current[0]

    assert state(scrape(collector)) == "unknown"
    started = time.time()
    run("nightly", instance)  # materializes raw/orders (its blocking check then fails the run)
    samples = scrape(collector)
    stamp = get(samples, "dagster_asset_last_materialization_timestamp_seconds", asset_key="raw/orders")
    assert stamp is not None and started - 1 <= stamp <= time.time() + 1
    clock.now = stamp + 60
    assert state(scrape(collector)) == "pass"
    clock.now = stamp + 31 * 60
    assert state(scrape(collector)) == "warn"
    clock.now = stamp + 61 * 60
    assert state(scrape(collector)) == "fail"


def test_freshness_rules_of_both_policy_kinds() -> None:
    window = FreshnessPolicy.time_window(fail_window=timedelta(hours=1))
    assert freshness_state(window, None, 1000.0) == "unknown"
    assert freshness_state(window, 1000.0, 1000.0 + 3599) == "pass"
    assert freshness_state(window, 1000.0, 1000.0 + 3600) == "fail"
    # due by 09:00 UTC, materialized in the hour before
    cron = FreshnessPolicy.cron(deadline_cron="0 9 * * *", lower_bound_delta=timedelta(hours=1))
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()
    on_time = datetime(2026, 12, 6, 8, 30, tzinfo=UTC).timestamp()
    yesterday = datetime(2026, 12, 5, 8, 30, tzinfo=UTC).timestamp()
    assert freshness_state(cron, on_time, now) == "pass"
    assert freshness_state(cron, yesterday, now) == "fail"


def _tick(instance: DagsterInstance, kind: InstigatorType, name: str, at: float) -> InstigatorTick:
    selector = InstigatorSelector(location_name="phlo", repository_name="__repository__", name=name)
    return instance.create_tick(
        TickData(
            instigator_origin_id=f"origin-{name}",
            instigator_name=name,
            instigator_type=kind,
            status=TickStatus.STARTED,
            timestamp=at,
            selector_id=selector.get_id(),
        )
    )


def test_ticks_count_once_they_finish(instance: DagsterInstance, workspace: WorkspaceProcessContext) -> None:
    collector = DagsterCollector(instance, locations=workspace_locations(workspace))
    at = time.time() - 30
    schedule_tick = _tick(instance, InstigatorType.SCHEDULE, "daily", at)
    first = scrape(collector)
    daily = {"type": "schedule", "name": "daily"}
    assert get(first, "dagster_instigator_ticks_total", status="SUCCESS", **daily) == 0  # running: not yet

    instance.update_tick(schedule_tick.with_status(TickStatus.SUCCESS))
    sensor_tick = _tick(instance, InstigatorType.SENSOR, "watch", at + 5)
    instance.update_tick(sensor_tick.with_status(TickStatus.SKIPPED))
    second = scrape(collector)
    assert get(second, "dagster_instigator_ticks_total", status="SUCCESS", **daily) == 1
    assert get(
        second, "dagster_instigator_last_tick_timestamp_seconds", status="SUCCESS", **daily
    ) == pytest.approx(at)
    watch_skipped = {"type": "sensor", "name": "watch", "status": "SKIPPED"}
    assert get(second, "dagster_instigator_ticks_total", **watch_skipped) == 1
    assert get(scrape(collector), "dagster_instigator_ticks_total", **watch_skipped) == 1  # counted once


def test_oldest_queued_run_age(instance: DagsterInstance) -> None:
    clock = Clock()
    collector = DagsterCollector(instance, clock=clock)
    assert get(scrape(collector), "dagster_runs_queued_oldest_age_seconds") == 0
    origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("phlo"), "__repository__").get_job_origin(
        "nightly"
    )
    queued = instance.add_run(
        DagsterRun(job_name="nightly", run_id="r-q", status=DagsterRunStatus.QUEUED, remote_job_origin=origin)
    )
    record = instance.get_run_record_by_id("r-q")
    assert record is not None
    clock.now = record.create_timestamp.timestamp() + 90
    assert get(scrape(collector), "dagster_runs_queued_oldest_age_seconds") == pytest.approx(90, abs=1)
    instance.report_run_canceled(queued)
    assert get(scrape(collector), "dagster_runs_queued_oldest_age_seconds") == 0


def test_build_info_names_both_versions(instance: DagsterInstance) -> None:
    samples = scrape(DagsterCollector(instance))
    (info,) = [labels for name, labels in samples if name == "dagster_build_info"]
    assert dict(info) == {"dagster_version": dagster.__version__, "phlo_dagster_version": "0.4.0"}


def test_steps_are_read_once_per_finished_run(
    instance: DagsterInstance, workspace: WorkspaceProcessContext
) -> None:
    collector = DagsterCollector(instance, locations=workspace_locations(workspace))
    scrape(collector)
    assert run("fine", instance)
    scrape(collector)
    assert collector.events.step_rows_read == 2  # the step's start and success
    scrape(collector)
    assert collector.events.step_rows_read == 0  # that run is not read again
