"""A data engineer's dbt project (tests/fixtures/dbt_shop, a jaffle-shop-shaped project on DuckDB) through the
`phlo` CLI: served without workflows/, compiled in its own folder, packages installed, --vars and
--full-refresh passed, no run directories left behind, and every failure a block that names its cause."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.integration.local_processes import start_logged, stop
from tests.operator_process import free_port

pytestmark = pytest.mark.integration

SHOP = Path(__file__).resolve().parents[1] / "fixtures" / "dbt_shop"

BUILD_FLAGS = """{{ config(materialized='incremental') }}
select '{{ var("label", "none") }}' as label, {{ 'true' if flags.FULL_REFRESH else 'false' }} as full_refresh
{% if is_incremental() %} where false {% endif %}
"""

REPORT = """import duckdb
from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset


def summarize(context):
    with duckdb.connect("shop/shop.duckdb") as conn:
        conn.execute("select count(*) from daily_revenue").fetchone()
    return MaterializeResult()


register_asset(AssetSpec(key="reports.summary", deps=["customers"], run=RunSpec(fn=summarize)))
"""


@pytest.fixture(name="project")
def shop_project(tmp_path: Path) -> Path:
    """A folder holding the dbt project as shop/ and nothing else (no workflows/); the dbt test modules share
    it as `project`."""
    root = tmp_path / "project"
    shutil.copytree(SHOP, root / "shop", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    (tmp_path / "tmp").mkdir()
    return root


def env_for(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env.update(
        PHLO_DBT_ENABLED="true",
        PHLO_DBT_PROJECT_DIR="shop",
        TMPDIR=str(project.parent / "tmp"),  # per-run dbt directories land here, and must not stay
    )
    env.update(extra)
    return env


def phlo(project: Path, *args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_dagster.cli", *args],
        cwd=project,
        env=env_for(project, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_block(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The one `phlo: error:` block, as lines; no traceback anywhere (nor a `Pool.__del__` one at exit)."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("phlo: error:")]
    assert len(starts) == 1, result.stderr
    block = [lines[starts[0]]]
    block += [line for line in lines[starts[0] + 1 :] if line.startswith("  ")]
    return block


def test_compile_runs_in_the_project_folder(project: Path) -> None:
    """profiles.yml's relative DuckDB path is the project folder's, as for `dbt build` run there."""
    result = phlo(project, "dbt", "compile")
    assert result.returncode == 0, result.stderr
    assert (project / "shop" / "shop.duckdb").is_file()
    assert not (project / "shop.duckdb").exists()


def test_a_bad_target_lists_the_valid_targets(project: Path) -> None:
    block = error_block(phlo(project, "dbt", "compile", PHLO_DBT_TARGET="nope"))
    assert block[0] == f"phlo: error: dbt compile of {project / 'shop'} failed:"
    text = "\n".join(block)
    assert "does not have a target named 'nope'" in text
    assert "- dev" in text and "- ci" in text


def test_a_compile_time_query_failure_names_the_model_and_leaves_no_traceback(project: Path) -> None:
    (project / "shop" / "models" / "marts" / "methods.sql").write_text(
        "{% set found = run_query('select distinct method from ' ~ ref('stg_payments')) %}\nselect 1 as x\n"
    )
    text = "\n".join(error_block(phlo(project, "dbt", "compile")))
    assert "Runtime Error in model methods (models/marts/methods.sql)" in text
    assert "Table with name stg_payments does not exist" in text


def test_packages_are_installed_before_compiling(project: Path) -> None:
    money = project / "money"
    (money / "macros").mkdir(parents=True)
    (money / "dbt_project.yml").write_text('name: money\nversion: "1.0.0"\nconfig-version: 2\n')
    (money / "macros" / "cents.sql").write_text(
        "{% macro cents_to_amount(column) %}({{ column }} / 100.0){% endmacro %}\n"
    )
    (project / "shop" / "packages.yml").write_text("packages:\n  - local: ../money\n")
    staging = project / "shop" / "models" / "staging" / "stg_payments.sql"
    staging.write_text(
        staging.read_text().replace("amount_cents / 100.0", "{{ money.cents_to_amount('amount_cents') }}")
    )
    result = phlo(project, "dbt", "compile")
    assert result.returncode == 0, result.stderr
    assert (project / "shop" / "dbt_packages" / "money" / "macros" / "cents.sql").is_file()
    assert phlo(project, "dbt", "compile").stdout.startswith(
        "dbt skipped (unchanged)"
    )  # the lock file is not hashed


def test_materialize_passes_vars_and_full_refresh_and_leaves_no_run_directory(project: Path) -> None:
    (project / "shop" / "models" / "build_flags.sql").write_text(BUILD_FLAGS)
    first = phlo(project, "materialize", "build_flags")
    assert first.returncode == 0, first.stderr
    again = phlo(project, "materialize", "build_flags", "--vars", "{label: nightly}", "--full-refresh")
    assert again.returncode == 0, again.stderr
    assert "--vars {label: nightly} --full-refresh" in again.stderr  # dbt's command line, as Dagster logs it
    with duckdb.connect(str(project / "shop" / "shop.duckdb"), read_only=True) as conn:
        assert conn.execute("select label, full_refresh from build_flags").fetchall() == [("nightly", True)]
    assert list((project.parent / "tmp").iterdir()) == []


def test_a_failing_dbt_test_and_a_duckdb_error_are_reported_with_their_names(project: Path) -> None:
    (project / "shop" / "tests").mkdir()
    (project / "shop" / "tests" / "assert_no_vouchers.sql").write_text(
        "select * from {{ ref('stg_payments') }} where method = 'voucher'\n"
    )
    (project / "workflows").mkdir()
    (project / "workflows" / "report.py").write_text(REPORT)
    dbt_test = error_block(phlo(project, "materialize", "--select", "*"))  # seeds, models, the report
    assert dbt_test[0].startswith("phlo: error: run ") and dbt_test[0].endswith(" failed in step dbt_models:")
    assert "  Failure in test assert_no_vouchers (tests/assert_no_vouchers.sql)" in dbt_test
    assert any("Got 2 results, configured to fail if != 0" in line for line in dbt_test)

    python = error_block(phlo(project, "materialize", "reports.summary"))
    assert python[0].endswith(" failed in step reports__summary:")
    assert "Catalog Error: Table with name daily_revenue does not exist!" in python[1]
    assert any(line.strip().startswith("LINE 1: select count(*) from daily_revenue") for line in python)
    assert python[-1] == "  at workflows/report.py:7 in summarize"


def start_dev(project: Path, log: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "phlo_dagster.cli", "dev", "--port", str(free_port()), *args]
    return start_logged(argv, cwd=project, env=env_for(project, **extra), log=log)


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"no {needle!r} in the output of `phlo dev`:\n{log.read_text()[-3000:]}")


def test_dev_serves_a_dbt_only_project(project: Path, tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    proc = start_dev(project, log)
    try:
        text = wait_for_line(proc, log, "phlo: code location phlo loaded", timeout=400)
        assert "phlo: WARNING" not in text, text[-3000:]
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def test_dev_warns_and_fails_when_the_location_never_loads(project: Path, tmp_path: Path) -> None:
    """A WORKFLOWS_PATH the user set stays an error when it does not exist: `phlo dev` says so and exits 1."""
    log = tmp_path / "dev.log"
    proc = start_dev(project, log, "--load-timeout", "20", WORKFLOWS_PATH="flows")
    try:
        proc.wait(timeout=400)
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    assert proc.returncode == 1, text[-3000:]
    assert "phlo: WARNING: code location phlo failed to load" in text
    assert "WORKFLOWS_PATH='flows': no such directory" in text
    assert "phlo: error: code location phlo did not load within 20s (--load-timeout):" in text
