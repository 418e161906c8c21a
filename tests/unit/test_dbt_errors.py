"""Errors keep their cause: dbt's and Python's meaningful lines as one block, the step and the file, no
traceback unless --debug; the dbt options of a run (--vars, --full-refresh), its own target directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from phlo_dagster import cli, dbt
from phlo_dagster.console import CliError, fail
from phlo_dagster.text import block_lines

pytestmark = pytest.mark.unit

BAD_TARGET = (
    "Encountered an error:\n"
    "Runtime Error\n"
    "  The profile 'shop' does not have a target named 'nope'. The valid target names for this profile are:\n"
    "   - dev\n"
    "   - ci\n"
)

DUCKDB_ERROR = (
    "_duckdb.CatalogException: Catalog Error: Table with name daily_revenue does not exist!\n"
    'Did you mean "pg_sequence"?\n'
    "\n"
    "LINE 1: select count(*) from daily_revenue\n"
    "                             ^^^^^^^^^^^^^\n"
)

DBT_CLI_ERROR = (
    "dagster_dbt.errors.DagsterDbtCliRuntimeError: The dbt CLI process with command\n\n"
    "`dbt build --select shop.assert_no_vouchers`\n\n"
    "failed with exit code `1`. Check the stdout in the Dagster compute logs for the full information about"
    " the error.\n\nErrors parsed from dbt logs:\n\n"
    "\x1b[31mFailure in test assert_no_vouchers (tests/assert_no_vouchers.sql)\x1b[0m\n\n"
    "  Got 2 results, configured to fail if != 0\n\n"
    "  compiled code at /tmp/x/compiled/shop/tests/assert_no_vouchers.sql"
)


def test_a_bad_target_keeps_the_valid_target_names() -> None:
    message = dbt.dbt_error([BAD_TARGET])
    assert message.splitlines() == [
        "Runtime Error",
        "  The profile 'shop' does not have a target named 'nope'."
        " The valid target names for this profile are:",
        "   - dev",
        "   - ci",
    ]


def test_a_dbt_traceback_is_cut_to_its_exception() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/x/dbt/main.py", line 3, in run\n'
        "    do()\n"
        "dbt_common.exceptions.DbtRuntimeError: Runtime Error\n"
        "  Database Error: disk full\n"
    )
    assert (
        dbt.dbt_error([text])
        == "dbt_common.exceptions.DbtRuntimeError: Runtime Error\n  Database Error: disk full"
    )


def test_a_block_keeps_the_caret_under_its_line_and_drops_colour_codes() -> None:
    lines = block_lines(DUCKDB_ERROR)
    assert lines[-2].index("daily_revenue") == lines[-1].index("^")
    assert block_lines("\x1b[31mFailure\x1b[0m in test x") == ["Failure in test x"]
    assert len(block_lines("\n".join(f"line {i}" for i in range(100)))) == 40


def test_a_failing_dbt_test_is_reported_with_its_name() -> None:
    lines = cli.error_lines(DBT_CLI_ERROR)
    assert lines[0] == "dbt exited with code 1:"
    assert lines[1] == "Failure in test assert_no_vouchers (tests/assert_no_vouchers.sql)"
    assert "  Got 2 results, configured to fail if != 0" in lines
    assert not any("Check the stdout" in line for line in lines)


def test_the_error_block_prints_below_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fail("run x failed in step s:\n" + DUCKDB_ERROR)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "phlo: error: run x failed in step s:"
    assert (
        err[1] == "  _duckdb.CatalogException: Catalog Error: Table with name daily_revenue does not exist!"
    )
    assert err[-1].strip() == "^^^^^^^^^^^^^"
    assert sum(line.startswith("phlo: error:") for line in err) == 1


def _failing_run(raise_fn: Any) -> Any:
    @dg.asset
    def summary() -> None:
        raise_fn()

    with dg.instance_for_test() as instance:
        return dg.materialize([summary], instance=instance, raise_on_error=False)


def test_a_python_step_error_keeps_its_lines_and_the_users_file(tmp_path: Path, monkeypatch) -> None:
    module = tmp_path / "report.py"
    module.write_text(f"def query():\n    raise RuntimeError({DUCKDB_ERROR!r})\n")
    namespace: dict[str, Any] = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)  # a user's file, by its path
    monkeypatch.chdir(tmp_path)
    cause = cli.failure_cause(_failing_run(namespace["query"]))
    lines = cause.splitlines()
    assert lines[0] == "step summary:"
    assert "Catalog Error: Table with name daily_revenue does not exist!" in lines[1]
    assert "LINE 1: select count(*) from daily_revenue" in cause
    assert lines[-1] == "at report.py:2 in query"
    module.write_text("def query():\n    raise RuntimeError('source unavailable')\n")
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    one = cli.failure_cause(_failing_run(namespace["query"]))
    assert one == "step summary: RuntimeError: source unavailable (at report.py:2 in query)"


def test_debug_shows_the_whole_error_with_its_stack(tmp_path: Path) -> None:
    def boom() -> None:
        raise RuntimeError("no such table")

    cause = cli.failure_cause(_failing_run(boom), debug=True)
    assert "RuntimeError: no such table" in cause
    assert 'File "' in cause and "in boom" in cause


def test_no_traceback_unless_debug(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("PHLO_DEBUG", raising=False)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise KeyError("model.shop.loyalty_tiers")

    monkeypatch.setattr(cli, "materialize_assets", broken)
    with pytest.raises(SystemExit):
        cli.main(["materialize", "x"], own=True)
    quiet = capsys.readouterr().err
    assert quiet == "phlo: error: KeyError: 'model.shop.loyalty_tiers'\n"
    with pytest.raises(SystemExit):
        cli.main(["--debug", "materialize", "x"], own=True)
    loud = capsys.readouterr().err
    assert "Traceback (most recent call last)" in loud and loud.endswith(quiet)
    os.environ.pop("PHLO_DEBUG", None)


def test_build_args_pass_vars_and_full_refresh(tmp_path: Path) -> None:
    plain = dbt.build_args(vars_text="", full_refresh=False, run_dir=tmp_path)
    assert plain == ["build", "--log-path", str(tmp_path / "logs")]
    both = dbt.build_args(vars_text="{day: 2024-01-01}", full_refresh=True, run_dir=tmp_path)
    assert both[3:] == ["--vars", "{day: 2024-01-01}", "--full-refresh"]


@pytest.mark.parametrize(
    ("text", "needle"), [("[1, 2]", "not a mapping"), ("{a: [", "not YAML or JSON"), ("7", "not a mapping")]
)
def test_vars_must_be_a_mapping(text: str, needle: str) -> None:
    with pytest.raises(CliError) as info:
        cli.parse_dbt_vars(text)
    assert str(info.value).startswith(f"--vars {text!r}: {needle}")
    assert cli.parse_dbt_vars('{"day": "2024-01-01"}') == '{"day": "2024-01-01"}'
    assert cli.parse_dbt_vars(None) == ""


def test_vars_without_a_dbt_model_selected_is_an_error() -> None:
    @dg.asset
    def plain() -> None: ...

    graph = dg.Definitions(assets=[plain]).get_repository_def().asset_graph
    assert cli.dbt_run_config(graph, {dg.AssetKey("plain")}, "", False) == {}
    with pytest.raises(CliError, match=r"^--full-refresh: none of the selected assets is a dbt model"):
        cli.dbt_run_config(graph, {dg.AssetKey("plain")}, "", True)


def test_a_runs_target_directory_is_removed_even_when_dbt_fails() -> None:
    with pytest.raises(RuntimeError), dbt._run_dir() as run_dir:
        (run_dir / "manifest.json").write_text("{}")
        raise RuntimeError("dbt failed")
    assert not run_dir.exists()
    assert run_dir.parent == Path(tempfile.gettempdir())


def test_pools_a_failed_dbt_command_left_running_are_stopped() -> None:
    from dbt.graph.thread_pool import DbtThreadPool

    pool = DbtThreadPool(1)
    dbt._stop_abandoned_pools()
    assert pool.is_closed()
    pool.__del__()  # what Python calls at exit: a closed pool writes nothing


def test_package_lock_does_not_change_the_project_hash(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "packages.yml").write_text("packages: []\n")
    kw = {"project_dir": tmp_path, "profiles_dir": tmp_path, "target": None, "target_path": tmp_path / "t"}
    before = dbt.project_hash(**kw)
    (tmp_path / "package-lock.yml").write_text("packages: []\nsha1_hash: abc\n")
    assert dbt.project_hash(**kw) == before
