"""What a run of tests/fixtures/dbt_shop builds: dbt selections, selectors and tags through `phlo materialize`
and the dbt step's run config, only the models of the loaded manifest, and a project venv without the
quickstart's example plugin (so `--select '*'` builds a project's own assets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.integration.test_dbt_projects import (
    env_for,
    error_block,
    phlo,
    shop_project,  # noqa: F401 (the `project` fixture)
)

pytestmark = pytest.mark.integration

SEEDS = {"raw_customers", "raw_orders", "raw_payments"}
STAGING = {"stg_customers", "stg_orders", "stg_payments"}
MARTS = {"customers", "orders"}  # tagged nightly (dbt_project.yml)

PLAIN = """from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset

register_asset(AssetSpec(key="wf.first", run=RunSpec(fn=lambda context: MaterializeResult())))
register_asset(
    AssetSpec(key="wf.second", deps=["wf.first"], run=RunSpec(fn=lambda context: MaterializeResult()))
)
"""

ENTRY_POINTS = (
    "from importlib.metadata import entry_points\n"
    "print(sorted(f'{e.group}:{e.name}' for e in entry_points() if e.group.startswith('phlo.plugins.')))\n"
)


def materialized(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr[-4000:]
    return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("materialized ")}


def tables(project: Path) -> set[str]:
    with duckdb.connect(str(project / "shop" / "shop.duckdb"), read_only=True) as conn:
        return {row[0] for row in conn.execute("select table_name from information_schema.tables").fetchall()}


@pytest.mark.parametrize("kind", ["dbt-only", "workflows-only"])
def test_a_project_in_the_venv_sees_only_its_own_assets(project: Path, kind: str) -> None:
    """`make venv` installs this package alone: no project in the venv gains the quickstart plugin's
    partitioned ref/regions, so `phlo materialize --select '*'` builds exactly the project's assets.

    Mutation (2026-12-02): with the plugin's distribution on PYTHONPATH (what `pip install -e
    examples/quickstart/plugin` in `make venv` gave every project), both cases failed: the entry points listed
    phlo.plugins.assets:quickstart, and `--select '*'` stopped with `--partition: required, ref/regions is
    partitioned`."""
    extra = {}
    if kind == "workflows-only":
        shutil.rmtree(project / "shop")
        (project / "workflows").mkdir()
        (project / "workflows" / "plain.py").write_text(PLAIN)
        extra = {"PHLO_DBT_ENABLED": "false"}
    found = subprocess.run(
        [sys.executable, "-c", ENTRY_POINTS],
        cwd=project,
        env=env_for(project, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert "quickstart" not in found.stdout, found.stdout
    everything = materialized(phlo(project, "materialize", "--select", "*", **extra))
    own = SEEDS | STAGING | MARTS if kind == "dbt-only" else {"wf/first", "wf/second"}
    assert everything == own


def test_materialize_selects_dbt_models_by_selection_selector_and_tag(project: Path) -> None:
    """--selector (selectors.yml), --dbt-select/--dbt-exclude (dbt's syntax, tags included) and Dagster's
    --select on a dbt tag each build exactly the models they name.

    Mutation (2026-12-02): with resolve_asset_keys ignoring the dbt selection, `--selector staging` stopped
    with "give at least one ASSET"; with selection_keys resolving `fqn:*` whatever it was given, the first
    run built all eight models."""
    staging = phlo(project, "materialize", "--selector", "staging")
    assert materialized(staging) == SEEDS | STAGING
    assert tables(project) >= SEEDS | STAGING and not tables(project) & MARTS
    # Each run event is one progress line: dagster-dbt's lines were printed a second time by the root logger
    # (mutation 2026-12-06: with dagster_logs_not_repeated() a no-op, 'dagster.builtin INFO' lines came back).
    assert "dagster.builtin" not in staging.stderr, staging.stderr[-3000:]
    assert staging.stderr.count('Started execution of step "dbt_models"') == 1, staging.stderr[-3000:]
    picked = phlo(project, "materialize", "--dbt-select", "tag:nightly", "--dbt-exclude", "customers")
    assert materialized(picked) == {"orders"}  # orders reads the staging views built above
    assert materialized(phlo(project, "materialize", "--selector", "nightly")) == MARTS
    assert materialized(phlo(project, "materialize", "--select", "tag:nightly")) == MARTS


def test_a_bad_dbt_selection_is_one_error_naming_it(project: Path) -> None:
    """Mutation (2026-12-02): without the selector check, `--selector nope` ended in dagster-dbt's
    "ValueError: Selector `nope` not found in manifest." line, without the flag or the known selectors."""
    assert error_block(phlo(project, "materialize", "--selector", "nope")) == [
        "phlo: error: --selector 'nope': no such selector (selectors: nightly, staging)"
    ]
    assert error_block(phlo(project, "materialize", "--dbt-select", "tag:nope")) == [
        "phlo: error: --dbt-select 'tag:nope': selects no dbt model"
    ]
    both = error_block(phlo(project, "materialize", "--selector", "nightly", "--dbt-select", "orders"))
    assert both[0].startswith("phlo: error: --selector 'nightly': a selector stands alone"), both
    method = "\n".join(error_block(phlo(project, "materialize", "--dbt-select", "colour:red")))
    assert method.startswith("phlo: error: --dbt-select 'colour:red' failed:"), method
    assert "colour" in method.split("\n", 1)[1], method  # dbt's own words on the unknown method


def test_run_config_narrows_a_runs_dbt_models(project: Path) -> None:
    """The dbt step's run config (the launchpad's `ops: {dbt_models: {config: ...}}`) selects among the run's
    models: `dagster asset materialize --select '*'` with `selector: staging` builds the seeds and staging
    views only; an unknown selector fails the step naming the config.

    Mutation (2026-12-02): with the op ignoring config.selector, the run built all eight models (the marts'
    tables were there)."""
    import dagster as dg

    env = env_for(project, DAGSTER_HOME=str(project / ".phlo"))
    (project / ".phlo").mkdir()

    def dagster(config: dict[str, object]) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m"]
        argv += ["phlo_dagster.definitions", "--select", "*", "--config-json", json.dumps(config)]
        return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=600)

    done = dagster({"ops": {"dbt_models": {"config": {"selector": "staging"}}}})
    assert done.returncode == 0, done.stderr[-4000:]
    with dg.DagsterInstance.from_config(str(project / ".phlo")) as instance:
        (run,) = instance.get_runs()
        built = {
            record.dagster_event.asset_key.to_user_string()
            for record in instance.all_logs(run.run_id)
            if record.dagster_event is not None
            and record.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
        }
    assert built == SEEDS | STAGING
    assert not tables(project) & MARTS
    failed = dagster({"ops": {"dbt_models": {"config": {"selector": "nope"}}}})
    assert failed.returncode != 0
    assert "ops.dbt_models.config.selector 'nope': no such selector (selectors: nightly, staging)" in (
        failed.stdout + failed.stderr
    )


LOYALTY = "select customer_id, order_count > 2 as gold from {{ ref('customers') }}\n"


def test_a_run_builds_only_the_models_of_its_loaded_manifest(project: Path) -> None:
    """A model and a test added after the compile (the definitions load the old manifest) are not run by a run
    of every asset: it builds the eight models it knows and succeeds.

    Mutation (2026-12-02): with dagster-dbt's default selection back (dbt_assets without select="", no
    explicit --select of the manifest's nodes), the run failed: dbt built loyalty_tiers and ran the new test,
    and dagster-dbt stopped on KeyError: 'model.shop.loyalty_tiers'."""
    compiled = phlo(project, "dbt", "compile")
    assert compiled.returncode == 0, compiled.stderr
    (project / "shop" / "models" / "marts" / "loyalty_tiers.sql").write_text(LOYALTY)
    (project / "shop" / "tests").mkdir()
    (project / "shop" / "tests" / "customers_never.sql").write_text("select * from {{ ref('customers') }}\n")
    result = phlo(project, "materialize", "--select", "*", PHLO_DBT_COMPILE_ON_LOAD="false")
    assert materialized(result) == SEEDS | STAGING | MARTS
    assert "loyalty_tiers" not in tables(project)
    assert "customers_never" not in result.stderr


LAZY_DBT_CORE = """
import sys
from phlo_dagster.cli import load_definitions

defs = load_definitions()
loaded = sorted(m for m in sys.modules if m == "dbt" or m.startswith("dbt."))
print("after definitions:", loaded)
import dagster_dbt
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

[dbt_assets] = [a for a in defs.assets if "dbt_models" in getattr(a, "op", None).name]
manifest, translator, project = get_manifest_and_translator_from_dbt_assets([dbt_assets])
select = dagster_dbt.DbtManifestAssetSelection.build
chosen = select(manifest, "tag:nightly", dagster_dbt_translator=translator)
print("nightly:", sorted(k.to_user_string() for k in chosen.resolve([dbt_assets])))
import dbt.version
print("dbt.version:", dbt.version.__version__)
"""


def test_definitions_load_without_importing_dbt_core(project: Path) -> None:
    """Loading the definitions of a dbt project imports no dbt-core module (dbt runs as a subprocess;
    importing dbt-core through dagster-dbt cost 1.5-2 s of every start, phlo_dagster/dbt_lazy.py); a selection
    other than "every model" still goes through dbt-core's own selector, and dbt.version stays importable.

    Mutation (2026-12-06): with dbt_lazy.dagster_dbt importing dagster_dbt plainly, the first assertion
    failed (dbt, dbt.adapters.base.impl, ... were loaded); with the selection wrapper removed, tag:nightly
    raised DagsterDbtCoreNotInstalledError."""
    assert phlo(project, "dbt", "compile").returncode == 0
    done = subprocess.run(
        [sys.executable, "-c", LAZY_DBT_CORE],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["after definitions"] == "[]", lines
    assert lines["nightly"] == str(sorted(MARTS)), lines
    assert lines["dbt.version"].startswith("1.11."), lines
