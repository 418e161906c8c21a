"""A launched run's steps fork from a process that has loaded the code location once: the definitions are not
built again for every step (what made a short run of a few steps mostly definitions loading)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

pytestmark = pytest.mark.integration

CHAIN = """import os
from pathlib import Path

from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset

with Path(os.environ["IMPORTS_LOG"]).open("a") as log:
    log.write(f"{os.getpid()}\\n")

previous = None
for i in range(4):
    deps = [previous] if previous else []
    register_asset(AssetSpec(key=f"wf.a{i}", deps=deps, run=RunSpec(fn=lambda context: MaterializeResult())))
    previous = f"wf.a{i}"
"""


def test_a_run_of_four_steps_loads_the_workflows_twice_not_five_times(tmp_path: Path) -> None:
    """`dagster asset materialize` (the job's own executor, as a launched run uses) of a four-asset chain: the
    workflow module is imported by the run's process and once by the forkserver, never by the steps.

    Mutation (2026-12-06): with the Definitions' executor left to Dagster's default (spawn), the module was
    imported 5 times (the run's process and each of the four steps)."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "chain.py").write_text(CHAIN)
    (tmp_path / "home").mkdir()
    imports = tmp_path / "imports.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        WORKFLOWS_PATH="workflows",
        PHLO_DBT_ENABLED="false",
        IMPORTS_LOG=str(imports),
    )
    argv = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize"]
    argv += ["-m", "phlo_dagster.definitions", "--select", "*"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        done_steps = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_SUCCESS).records
        assert len(done_steps) == 4  # four steps, each in a process of its own
    pids = imports.read_text().split()
    assert len(pids) == 2, pids
