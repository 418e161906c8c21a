"""`phlo dev` serves a project without workflows/, warns loudly when its code location fails to load, and
fails when it never loads; the demo reads a `phlo` error block whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from phlo_dagster import graphql
from phlo_dagster.cli import LocationWatch, dev_env
from phlo_dagster.console import CliError, error_block
from phlo_dagster.services import DagsterServicePlugin, LocalServices, PhloHome

pytestmark = pytest.mark.unit

LOAD_ERROR = {
    "__typename": "PythonError",
    "message": "DagsterUserCodeLoadError: Error occurred during the loading of Dagster definitions",
    "causes": [{"message": "WorkflowImportError: workflow module bad.py failed to import at bad.py:1"}],
}


def _workspace(entry: dict[str, object]) -> dict[str, object]:
    return {"data": {"workspaceOrError": {"__typename": "Workspace", "locationEntries": [entry]}}}


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (
            _workspace({"name": "phlo", "loadStatus": "LOADED", "locationOrLoadError": LOAD_ERROR}),
            graphql.LocationState(
                "failed",
                "DagsterUserCodeLoadError: Error occurred during the loading of Dagster definitions\n"
                "WorkflowImportError: workflow module bad.py failed to import at bad.py:1",
            ),
        ),
        (
            _workspace(
                {
                    "name": "phlo",
                    "loadStatus": "LOADED",
                    "locationOrLoadError": {"__typename": "RepositoryLocation"},
                }
            ),
            graphql.LocationState("loaded"),
        ),
        (
            _workspace({"name": "phlo", "loadStatus": "LOADING", "locationOrLoadError": None}),
            graphql.LocationState("loading"),
        ),
        (_workspace({"name": "other", "loadStatus": "LOADED"}), graphql.LocationState("missing")),
        (
            {"errors": [{"message": "bad query"}]},
            graphql.LocationState("unreachable", "[{'message': 'bad query'}]"),
        ),
    ],
)
def test_location_state_from_the_workspace(payload: dict[str, object], state: graphql.LocationState) -> None:
    assert graphql.parse_location_state(payload, "phlo") == state


def test_location_state_of_nothing_listening_is_unreachable() -> None:
    assert graphql.location_state("http://127.0.0.1:9", "phlo", timeout=2).status == "unreachable"


FAILED = graphql.LocationState(
    "failed", "WorkflowImportError: workflow module bad.py failed to import\nat bad.py:1"
)


def test_a_load_failure_is_a_loud_warning_then_an_error_at_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    watch = LocationWatch("phlo", load_timeout=60, now=0.0)
    watch.observe(graphql.LocationState("loading"), now=1.0)
    assert capsys.readouterr().err == ""
    watch.observe(FAILED, now=2.0)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "phlo: WARNING: code location phlo failed to load; the UI shows no assets from it"
    assert err[1:3] == ["  WorkflowImportError: workflow module bad.py failed to import", "  at bad.py:1"]
    assert "Reload" in err[3] and "60s" in err[3]
    watch.observe(FAILED, now=3.0)  # the same failure is reported once
    assert capsys.readouterr().err == ""
    with pytest.raises(CliError) as info:
        watch.observe(FAILED, now=60.0)
    assert str(info.value).splitlines() == [
        "code location phlo did not load within 60s (--load-timeout):",
        "WorkflowImportError: workflow module bad.py failed to import",
        "at bad.py:1",
    ]


def test_a_location_that_loaded_once_never_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    watch = LocationWatch("phlo", load_timeout=10, now=0.0)
    watch.observe(graphql.LocationState("unreachable", "timed out"), now=1.0)  # asked again later
    watch.observe(graphql.LocationState("loaded"), now=2.0)
    assert capsys.readouterr().err == "phlo: code location phlo loaded\n"
    watch.observe(FAILED, now=100.0)  # a reload that fails later: a warning, `phlo dev` keeps serving
    assert "failed to load" in capsys.readouterr().err
    forever = LocationWatch("phlo", load_timeout=0, now=0.0)
    forever.observe(FAILED, now=10_000.0)


def test_dev_sets_no_default_workflows_path(tmp_path: Path) -> None:
    assert "WORKFLOWS_PATH" not in dev_env({"PATH": "/bin"}, None)
    assert dev_env({"WORKFLOWS_PATH": "flows"}, None)["WORKFLOWS_PATH"] == "flows"  # the user's, kept
    (tmp_path / "flows").mkdir()
    assert dev_env({}, tmp_path / "flows")["WORKFLOWS_PATH"] == str(tmp_path / "flows")
    with pytest.raises(CliError, match=r"--workflows-path .*nope: no such directory"):
        dev_env({}, tmp_path / "nope")


def test_services_set_no_default_workflows_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKFLOWS_PATH", raising=False)
    webserver = DagsterServicePlugin().definition()
    runner = LocalServices(PhloHome(tmp_path), definitions=[webserver])
    assert "WORKFLOWS_PATH" not in runner.env_for(webserver)


def test_the_demo_reads_a_phlo_error_block_whole() -> None:
    stderr = (
        "phlo: materializing raw/orders\n"
        "phlo: error: run x failed in step raw__orders:\n"
        "  duckdb.IOException: IO Error: Could not set lock on file\n"
        "    held by another process\n"
    )
    assert error_block(stderr) == (
        "run x failed in step raw__orders:\nduckdb.IOException: IO Error: Could not set lock on file\n"
        "  held by another process"
    )
    assert error_block("only a line\n") == "only a line"
