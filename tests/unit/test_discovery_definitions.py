"""build_definitions joins plugin specs, workflow specs and plain Dagster objects; duplicates fail."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pytest

from phlo_dagster.capabilities import DuplicateSpecError
from phlo_dagster.definitions import BUILD_SECONDS_METADATA, LOAD_ERRORS, build_definitions
from phlo_dagster.discovery import WorkflowImportError
from phlo_dagster.settings import Settings

pytestmark = pytest.mark.unit

SPEC = """
from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset
register_asset(AssetSpec(key="{key}", run=RunSpec(fn=lambda c: None)))
"""

PLAIN = """
import dagster as dg

@dg.asset(key={key!r})
def plain_asset():
    return None

nightly = dg.ScheduleDefinition(name="nightly", cron_schedule="0 3 * * *", target=[plain_asset])
"""


def _write(root: Path, name: str, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(textwrap.dedent(text))


def test_specs_plugins_and_plain_objects_in_one_definitions(tmp_path):
    _write(tmp_path, "a.py", SPEC.format(key="wf.orders"))
    _write(tmp_path, "b.py", PLAIN.format(key=["plain", "report"]))
    defs = build_definitions(Settings(workflows_path=tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"wf/orders", "plain/report", "ref/regions"} <= keys  # ref/regions: the quickstart plugin
    assert defs.get_schedule_def("nightly").cron_schedule == "0 3 * * *"
    assert defs.metadata[BUILD_SECONDS_METADATA].value > 0


def test_spec_and_plain_asset_with_same_key_fail_naming_both(tmp_path):
    _write(tmp_path, "a.py", SPEC.format(key="dup.thing"))
    _write(tmp_path, "b.py", PLAIN.format(key=["dup", "thing"]))
    with pytest.raises(DuplicateSpecError) as info:
        build_definitions(Settings(workflows_path=tmp_path, plugins_enabled=False))
    message = str(info.value)
    assert "'dup/thing'" in message
    assert str(tmp_path / "a.py") in message and "b.py (plain_asset)" in message


def test_workflow_spec_clashing_with_plugin_spec_names_both(tmp_path):
    _write(tmp_path, "a.py", SPEC.format(key="ref.regions"))
    with pytest.raises(DuplicateSpecError) as info:
        build_definitions(Settings(workflows_path=tmp_path))
    assert "entry point phlo.plugins.assets:quickstart" in str(info.value)
    assert str(tmp_path / "a.py") in str(info.value)


def test_load_errors_cover_bad_input(tmp_path):
    _write(tmp_path, "a.py", "raise ValueError('nope')\n")
    with pytest.raises(LOAD_ERRORS) as info:
        build_definitions(Settings(workflows_path=tmp_path, plugins_enabled=False))
    assert isinstance(info.value, WorkflowImportError)
    assert "\n" not in str(info.value)


def test_plain_definitions_object_is_merged(tmp_path):
    _write(
        tmp_path,
        "defs_module.py",
        """
        import dagster as dg

        @dg.asset(key=["merged", "asset"])
        def merged():
            return None

        defs = dg.Definitions(assets=[merged])
        """,
    )
    defs = build_definitions(Settings(workflows_path=tmp_path, plugins_enabled=False))
    assert dg.AssetKey(["merged", "asset"]) in defs.resolve_asset_graph().get_all_asset_keys()
