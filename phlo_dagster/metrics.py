"""Prometheus metrics over a Dagster instance, read incrementally so a scrape stays fast as history grows.

Each scrape reads only what changed since the previous one:
- runs: rows of the run storage whose ``update_timestamp`` is at or after the last one seen (minus a short
  lookback that absorbs commit delays between writers), compared with the state already known;
- events: materialization and check-evaluation rows of the event log above the last storage id read.
Heartbeats and code-location state are small and read whole on every scrape.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from dagster import AssetCheckEvaluation, AssetKey, DagsterEventType, DagsterInstance, EventLogEntry
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.runs.schema import RunsTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage
from dagster._serdes import deserialize_value
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from phlo_dagster.constants import DEFINITIONS_BUILD_SECONDS_METADATA_KEY

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the run duration histogram: from quick asset runs to multi-hour backfills.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
#: Re-read run rows updated this long before the newest one seen, so a slow commit is not skipped.
DEFAULT_LOOKBACK = timedelta(seconds=5)
_EVENT_PAGE = 5000
_FINISHED = {s.value for s in FINISHED_STATUSES}
_IN_PROGRESS = {s.value for s in IN_PROGRESS_RUN_STATUSES}
_MATERIALIZATION = DagsterEventType.ASSET_MATERIALIZATION.value
_CHECK_EVALUATION = DagsterEventType.ASSET_CHECK_EVALUATION.value


@dataclass(frozen=True)
class LocationState:
    """What the webserver's workspace knows about one code location."""

    name: str
    load_error: bool
    definitions_build_seconds: float | None = None


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else _fmt(bound), running))
        return out


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _unwrap(storage: Any, attr: str) -> Any:
    """Legacy storage wrappers hide the SQL storage behind ``_storage.<attr>``."""
    inner = getattr(storage, "_storage", None)
    return getattr(inner, attr, storage) if inner is not None else storage


class RunTracker:
    """Run counts by status and job, finished-run counters and durations, kept current from a cursor.

    Memory stays bounded by the runs that can still change: finished statuses are final in Dagster, so only
    unfinished runs are held individually. A row re-read later (its tags changed, or it falls in the lookback)
    whose storage id is at or below the highest id already seen and that is not held as unfinished was
    already counted as finished.
    """

    def __init__(self, instance: DagsterInstance, lookback: timedelta = DEFAULT_LOOKBACK) -> None:
        storage = _unwrap(instance.run_storage, "run_storage")
        if not isinstance(storage, SqlRunStorage):
            raise TypeError(f"run storage {type(storage).__name__} is not SQL-backed")
        self._storage: SqlRunStorage = storage
        self._lookback = lookback
        self._cursor: datetime | None = None
        self._max_id = 0  # highest run row id seen
        self._unfinished: dict[str, tuple[str, str]] = {}  # run_id -> (job, status), unfinished runs only
        self.by_status: Counter[tuple[str, str]] = Counter()  # (status, job) -> runs
        self.finished: Counter[tuple[str, str]] = Counter()  # (status, job) -> finished runs seen
        self.durations: dict[tuple[str, str], _Histogram] = {}  # (job, status) -> histogram
        self.rows_read = 0  # rows the last refresh read (shows the scrape is incremental)

    def refresh(self) -> None:
        """Apply run rows changed since the cursor; recount the gauges if runs were deleted."""
        cols = [
            RunsTable.c.id,
            RunsTable.c.run_id,
            RunsTable.c.pipeline_name,
            RunsTable.c.status,
            RunsTable.c.update_timestamp,
            RunsTable.c.start_time,
            RunsTable.c.end_time,
        ]
        query = sa.select(*cols).order_by(RunsTable.c.id)
        if self._cursor is not None:
            query = query.where(RunsTable.c.update_timestamp >= self._cursor - self._lookback)
        with self._storage.connect() as conn:
            rows: list[Any] = list(conn.execute(query).fetchall())
            total = conn.execute(sa.select(sa.func.count()).select_from(RunsTable)).scalar_one()
        self.rows_read = len(rows)
        seen_before = self._max_id
        for row_id, run_id, job, status, updated, start, end in rows:
            self._apply(row_id <= seen_before, run_id, job or "", status, start, end)
            self._max_id = max(self._max_id, row_id)
            if updated is not None and (self._cursor is None or updated > self._cursor):
                self._cursor = updated
        if total != sum(self.by_status.values()):
            self._recount()

    def _apply(
        self, seen: bool, run_id: str, job: str, status: str, start: float | None, end: float | None
    ) -> None:
        previous = self._unfinished.get(run_id)
        if previous is None and seen:
            return  # finished when last seen, and finished is final
        if previous == (job, status):
            return
        if previous is not None:
            self.by_status[(previous[1], previous[0])] -= 1
        self.by_status[(status, job)] += 1
        if status not in _FINISHED:
            self._unfinished[run_id] = (job, status)
            return
        self._unfinished.pop(run_id, None)
        self.finished[(status, job)] += 1
        if start is not None and end is not None and end >= start:
            self.durations.setdefault((job, status), _Histogram()).observe(end - start)

    def _recount(self) -> None:
        """Runs were deleted: recount the gauges with one aggregate query; counters keep their values."""
        table = RunsTable
        with self._storage.connect() as conn:
            counts: Sequence[Any] = conn.execute(
                sa.select(table.c.status, table.c.pipeline_name, sa.func.count()).group_by(
                    table.c.status, table.c.pipeline_name
                )
            ).fetchall()
            unfinished: Sequence[Any] = conn.execute(
                sa.select(table.c.run_id, table.c.pipeline_name, table.c.status).where(
                    table.c.status.notin_(sorted(_FINISHED))
                )
            ).fetchall()
        self.by_status = Counter({(status, job or ""): n for status, job, n in counts})
        self._unfinished = {run_id: (job or "", status) for run_id, job, status in unfinished}

    @property
    def held(self) -> int:
        """Runs held individually in memory (the unfinished ones)."""
        return len(self._unfinished)

    def count_where(self, statuses: set[str]) -> int:
        return sum(n for (status, _job), n in self.by_status.items() if status in statuses)


class EventTracker:
    """Materialization and check-evaluation counters, read from the event log after a stored storage id."""

    def __init__(self, instance: DagsterInstance) -> None:
        storage = _unwrap(instance.event_log_storage, "event_log_storage")
        if not isinstance(storage, SqlEventLogStorage):
            raise TypeError(f"event log storage {type(storage).__name__} is not SQL-backed")
        self._storage: SqlEventLogStorage = storage
        self.cursor = 0
        self.materializations: Counter[str] = Counter()  # asset_key -> count
        self.checks: Counter[tuple[str, str, str, str]] = Counter()  # (asset, check, outcome, severity)
        self.rows_read = 0

    def refresh(self) -> None:
        table = SqlEventLogStorageTable
        self.rows_read = 0
        # The index connection holds cross-run asset events, including in run-sharded SQLite storage.
        with self._storage.index_connection() as conn:
            high: Any = conn.execute(sa.select(sa.func.max(table.c.id))).scalar()
            if high is None or high <= self.cursor:
                return
            window = (table.c.id > self.cursor) & (table.c.id <= high)
            materialized: Sequence[Any] = conn.execute(
                sa.select(table.c.asset_key, sa.func.count())
                .where(window & (table.c.dagster_event_type == _MATERIALIZATION))
                .group_by(table.c.asset_key)
            ).fetchall()
            low = self.cursor
            evaluations: list[str] = []
            while True:
                page: Sequence[Any] = conn.execute(
                    sa.select(table.c.id, table.c.event)
                    .where((table.c.id > low) & (table.c.id <= high))
                    .where(table.c.dagster_event_type == _CHECK_EVALUATION)
                    .order_by(table.c.id)
                    .limit(_EVENT_PAGE)
                ).fetchall()
                evaluations.extend(body for _id, body in page)
                if len(page) < _EVENT_PAGE:
                    break
                low = page[-1][0]
        self.rows_read = sum(count for _key, count in materialized) + len(evaluations)
        for raw_key, count in materialized:
            self.materializations[_asset_label(raw_key)] += count
        for body in evaluations:
            key = _check_labels(body)
            if key is not None:
                self.checks[key] += 1
        self.cursor = high


def _asset_label(raw_key: str | None) -> str:
    if not raw_key:
        return ""
    try:
        return AssetKey.from_db_string(raw_key).to_user_string()  # type: ignore[union-attr]
    except Exception:  # an unparseable key still counts, under its stored form
        return raw_key


def _check_labels(body: str) -> tuple[str, str, str, str] | None:
    try:
        entry = deserialize_value(body, EventLogEntry)
    except Exception:
        log.warning("skipping an unreadable check evaluation event")
        return None
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    if not isinstance(data, AssetCheckEvaluation):
        return None
    severity = data.severity.value
    return (
        data.asset_key.to_user_string(),
        data.check_name,
        "passed" if data.passed else "failed",
        str(severity).lower(),
    )


def workspace_locations(workspace_process_context: Any) -> Callable[[], Sequence[LocationState]]:
    """Code-location state from a Dagster workspace process context (as the webserver holds it)."""

    def read() -> Sequence[LocationState]:
        entries = workspace_process_context.get_current_workspace().code_location_entries
        return [_location_state(name, entry) for name, entry in sorted(entries.items())]

    return read


def _location_state(name: str, entry: Any) -> LocationState:
    build: float | None = None
    location = entry.code_location
    if location is not None:
        for repo in location.get_repositories().values():
            value = (repo.repository_snap.metadata or {}).get(DEFINITIONS_BUILD_SECONDS_METADATA_KEY)
            raw = getattr(value, "value", value)
            if isinstance(raw, int | float):
                build = float(raw)
    return LocationState(name=name, load_error=entry.load_error is not None, definitions_build_seconds=build)


class DagsterCollector(Collector):
    """Collects the Dagster metric families listed in the README's Endpoints section on every scrape."""

    def __init__(
        self,
        instance: DagsterInstance,
        *,
        locations: Callable[[], Iterable[LocationState]] | None = None,
        clock: Callable[[], float] = time.time,
        lookback: timedelta = DEFAULT_LOOKBACK,
    ) -> None:
        self._instance = instance
        self.runs = RunTracker(instance, lookback)
        self.events = EventTracker(instance)
        self._locations = locations
        self._clock = clock
        self._lock = threading.Lock()

    def prime(self) -> None:
        """Read the stored history now (a first refresh reads every run row), so no scrape pays for it."""
        started = time.perf_counter()
        try:
            with self._lock:
                self.runs.refresh()
                self.events.refresh()
        except Exception as exc:  # the first scrape reads the history instead; it reports its own errors
            log.warning("metrics: reading the history ahead of the first scrape failed: %s", exc)
            return
        log.info("metrics: history read in %.3fs", time.perf_counter() - started)

    def describe(self) -> Iterable[Metric]:
        """Empty, so registering the collector does not trigger a scrape."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self.runs.refresh()
            self.events.refresh()
            families = [*self._run_families(), *self._event_families(), *self._health_families()]
        yield from families

    def _run_families(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "dagster_runs", "Runs in storage by status and job.", labels=["status", "job"]
        )
        for (status, job), n in sorted(self.runs.by_status.items()):
            if n:
                runs.add_metric([status, job], n)
        yield runs
        finished = CounterMetricFamily(
            "dagster_runs_finished",
            "Runs seen reaching a finished status (SUCCESS, FAILURE, CANCELED).",
            labels=["status", "job"],
        )
        for (status, job), n in sorted(self.runs.finished.items()):
            finished.add_metric([status, job], n)
        yield finished
        durations = HistogramMetricFamily(
            "dagster_run_duration_seconds",
            "Wall-clock duration of finished runs, start to end.",
            labels=["job", "status"],
        )
        for (job, status), hist in sorted(self.runs.durations.items()):
            durations.add_metric([job, status], hist.cumulative(), hist.total)
        yield durations
        yield GaugeMetricFamily(
            "dagster_runs_queued", "Runs waiting in the run queue.", value=self.runs.count_where({"QUEUED"})
        )
        yield GaugeMetricFamily(
            "dagster_runs_in_progress",
            "Runs started and not finished.",
            value=self.runs.count_where(_IN_PROGRESS),
        )

    def _event_families(self) -> Iterator[Metric]:
        mats = CounterMetricFamily(
            "dagster_asset_materializations", "Asset materializations recorded.", labels=["asset_key"]
        )
        for key, n in sorted(self.events.materializations.items()):
            mats.add_metric([key], n)
        yield mats
        checks = CounterMetricFamily(
            "dagster_asset_check_evaluations",
            "Asset check evaluations recorded, by outcome and severity.",
            labels=["asset_key", "check_name", "outcome", "severity"],
        )
        for labels, n in sorted(self.events.checks.items()):
            checks.add_metric(list(labels), n)
        yield checks

    def _health_families(self) -> Iterator[Metric]:
        now = self._clock()
        beats = GaugeMetricFamily(
            "dagster_daemon_heartbeat_age_seconds",
            "Seconds since each daemon's last heartbeat.",
            labels=["daemon_type"],
        )
        for daemon_type, beat in sorted(self._instance.get_daemon_heartbeats().items()):
            beats.add_metric([daemon_type], max(0.0, now - beat.timestamp))
        yield beats
        errors = GaugeMetricFamily(
            "dagster_code_location_load_errors",
            "1 when the code location failed to load, else 0.",
            labels=["location"],
        )
        build = GaugeMetricFamily(
            "phlo_definitions_build_seconds",
            "Seconds the code location took to build its Definitions.",
            labels=["location"],
        )
        for loc in self._locations() if self._locations else []:
            errors.add_metric([loc.name], 1 if loc.load_error else 0)
            if loc.definitions_build_seconds is not None:
                build.add_metric([loc.name], loc.definitions_build_seconds)
        yield errors
        yield build


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry holding only this collector, so process metrics of the host do not leak in."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
