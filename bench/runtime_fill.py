"""Batched filling of a SQLite instance for the /metrics benchmark at 100,000 runs (bench_metrics --batch).

bench_metrics.fill writes one run or one materialization per instance call: about 5-10 ms each on 2 busy
cores (mostly SQLAlchemy compiling each INSERT), so 100,000 of each would take 20-40 minutes. This writes the
same rows in batches of one statement and one transaction each, with the row values Dagster's own storage
code computes (run storage `_get_run_insertion_values`, event log `_event_to_row`, the asset-key row of
`_store_asset_event`): the runs table with status, start and end times as `handle_run_event` leaves them,
and each runless materialization in the run shard and the cross-run index shard, as
`report_runless_asset_event` does. What the webserver reads afterwards is the same as after `fill`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import AssetMaterialization, DagsterEvent, DagsterEventType, DagsterRun
from dagster._core.events import StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.runs.schema import RunsTable

BATCH = 5_000
TEMPLATE_ID = "00000000-0000-4000-8000-000000000000"
SPREAD = timedelta(hours=2)


def _chunks(start: int, stop: int) -> Iterator[range]:
    for lo in range(start, stop, BATCH):
        yield range(lo, min(lo + BATCH, stop))


def fill_batched(
    instance: Any, runs: int, materializations: int, statuses: list[Any], offset: int = 0
) -> None:
    """Runs over 20 jobs in `statuses` (one in ten with start and end times) and runless materializations
    over 100 assets, like bench_metrics.fill, in batches of BATCH rows.

    The runs are created over SPREAD ending 10 minutes ago, as a history accumulates: /metrics re-reads the
    runs updated within its 5 s lookback of the newest update at every scrape, so runs stamped with the few
    seconds this fill takes would all sit in that window (what a burst of runs does; see BENCHMARKS.md)."""
    storage = instance.run_storage
    start = datetime.now(UTC) - timedelta(minutes=10) - SPREAD
    step = SPREAD / max(runs, 1)
    templates: dict[tuple[str, Any], dict[str, Any]] = {}
    for chunk in _chunks(offset, offset + runs):
        rows = []
        for i in chunk:
            job, status = f"job_{i % 20}", statuses[i % len(statuses)]
            template = templates.get((job, status))
            if template is None:  # serialized once per job and status; each run gets its own id below
                run = DagsterRun(job_name=job, run_id=TEMPLATE_ID, status=status)
                template = templates[(job, status)] = storage._get_run_insertion_values(run)
            run_id, created = str(uuid.uuid4()), start + step * (i - offset)
            values = {
                **template,
                "run_id": run_id,
                "run_body": template["run_body"].replace(TEMPLATE_ID, run_id),
            }
            values.update(create_timestamp=created, start_time=None, end_time=None, update_timestamp=created)
            if i % 10 == 0:
                began = created
                ended = began + timedelta(seconds=5 + i % 300)
                values.update(
                    start_time=began.timestamp(), end_time=ended.timestamp(), update_timestamp=ended
                )
            rows.append(values)
        with storage.connect() as conn:
            conn.execute(RunsTable.insert(), rows)

    events = instance.event_log_storage
    for chunk in _chunks(offset, offset + materializations):
        entries = [
            EventLogEntry(
                user_message="",
                level=20,
                job_name=RUNLESS_JOB_NAME,
                run_id=RUNLESS_RUN_ID,
                error_info=None,
                timestamp=time.time(),
                dagster_event=DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    event_specific_data=StepMaterializationData(
                        AssetMaterialization(asset_key=["bench", f"asset_{i % 100}"])
                    ),
                    job_name=RUNLESS_JOB_NAME,
                ),
            )
            for i in chunk
        ]
        rows = [events._event_to_row(entry) for entry in entries]
        with events.run_connection(RUNLESS_RUN_ID) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        latest: dict[str, EventLogEntry] = {}
        for entry in entries:
            latest[entry.get_dagster_event().asset_key.to_string()] = entry  # type: ignore[union-attr]
        with events.index_transaction() as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
            for key, entry in latest.items():
                event_id = conn.execute(
                    SqlEventLogStorageTable.select()
                    .with_only_columns(SqlEventLogStorageTable.c.id)
                    .where(SqlEventLogStorageTable.c.asset_key == key)
                    .order_by(SqlEventLogStorageTable.c.id.desc())
                    .limit(1)
                ).scalar()
                events._store_asset_event(conn, entry, event_id)


def asset_key_count(instance: Any) -> int:
    """Assets the instance knows (100 after any fill): a quick sanity check for the batched writes."""
    return len(instance.get_asset_keys(prefix=["bench"]))
