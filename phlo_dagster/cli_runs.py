"""`phlo backfill`, `phlo status` and `phlo logs`: partitions over a range, asset state, service and run logs.

All three read or write the project's .phlo/ instance (the one `phlo dev` and `phlo materialize` use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from phlo_dagster.console import CliError, out, progress
from phlo_dagster.services import LocalServices, PhloHome

__all__ = ["backfill_partitions", "partition_range", "print_logs", "print_status"]


def partition_range(pdef: Any, start: str | None, end: str | None) -> list[str]:
    """Partition keys of pdef from start to end inclusive (either open); an unknown bound is an error."""
    keys = list(pdef.get_partition_keys())
    if not keys:
        raise CliError("the selected assets have no partitions yet")
    for flag, bound in (("--start", start), ("--end", end)):
        if bound is not None and bound not in keys:
            sample = f"{keys[0]} .. {keys[-1]}" if len(keys) > 1 else keys[0]
            raise CliError(f"{flag} {bound}: not a partition (partitions: {sample})")
    first = keys.index(start) if start is not None else 0
    last = keys.index(end) if end is not None else len(keys) - 1
    if first > last:
        raise CliError(f"--start {start} is after --end {end}")
    return keys[first : last + 1]


def backfill_partitions(
    assets: Sequence[str],
    select: str | None,
    start: str | None,
    end: str | None,
    *,
    load_definitions: Callable[[], Any],
    resolve_keys: Callable[[Any, Sequence[str], str | None], set[Any]],
    materialize: Callable[[Sequence[str], str | None, str | None], None],
) -> list[str]:
    """Materialize the selection once per partition in [start, end]; the first failing run stops it."""
    from dagster._core.definitions.partitions.context import partition_loading_context

    defs = load_definitions()
    graph = defs.get_repository_def().asset_graph
    keys = resolve_keys(graph, assets, select)
    pdefs = {graph.get(k).partitions_def for k in keys}
    if None in pdefs:
        unpartitioned = sorted(k.to_user_string() for k in keys if graph.get(k).partitions_def is None)
        raise CliError(f"asset {unpartitioned[0]}: not partitioned; use `phlo materialize`")
    if len(pdefs) != 1:
        raise CliError("the selected assets have different partitions; backfill them separately")
    (pdef,) = pdefs
    with partition_loading_context(effective_dt=datetime.now()):
        partitions = partition_range(pdef, start, end)
    progress(f"backfilling {len(partitions)} partitions ({partitions[0]} .. {partitions[-1]})")
    names = [k.to_user_string() for k in sorted(keys)]
    for partition in partitions:
        materialize(names, None, partition)
    out(f"backfilled {len(partitions)} partitions of {', '.join(names)}")
    return partitions


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).isoformat(timespec="seconds") if timestamp else "never"


def print_status(defs: Any, home: PhloHome) -> None:
    """Each asset's last materialization and partition count, then each local service's state."""
    graph = defs.get_repository_def().asset_graph
    rows: list[tuple[str, str, str]] = []
    with home.open_instance() as instance:
        for key in sorted(graph.materializable_asset_keys):
            event = instance.get_latest_materialization_event(key)
            pdef = graph.get(key).partitions_def
            done = ""
            if pdef is not None:
                materialized = instance.get_materialized_partitions(key)
                done = f"{len(materialized)} partitions"
            rows.append((key.to_user_string(), _when(event.timestamp if event else None), done))
    header = ("ASSET", "LAST MATERIALIZED", "PARTITIONS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    runner = LocalServices(home)
    for definition in runner.definitions:
        st = runner.status(definition)
        pid = f" pid {st.pid}" if st.pid else ""
        out(f"service {st.name}: {st.state}{pid}")


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:] if lines else text.splitlines()


def print_logs(home: PhloHome, service: str | None, run_id: str | None, lines: int) -> None:
    """The last lines of the services' logs under .phlo/logs, or one run's event log."""
    if run_id is not None:
        with home.open_instance() as instance:
            if instance.get_run_by_id(run_id) is None:
                raise CliError(f"--run {run_id}: no such run in {home.root}")
            records = instance.all_logs(run_id)
        for record in records[-lines:] if lines else records:
            when = datetime.fromtimestamp(record.timestamp).isoformat(timespec="seconds")
            kind = record.dagster_event.event_type_value if record.dagster_event else record.level
            step = f" {record.step_key}" if record.step_key else ""
            out(f"{when} {kind}{step}: {record.user_message}".rstrip())
        return
    runner = LocalServices(home)
    for definition in runner.select(service):
        path = home.logfile(definition.name)
        tail = _tail(path, lines)
        out(f"==> {definition.name} ({path}) <==")
        for line in tail or ["(no log yet: start it with `phlo services start` or `phlo dev`)"]:
            out(line)
