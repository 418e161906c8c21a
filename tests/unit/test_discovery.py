"""Discovery: workflow modules in sorted order, plain Dagster objects, errors with file and line, re-runs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from phlo_dagster.capabilities import registry
from phlo_dagster.discovery import (
    WORKFLOWS_PACKAGE,
    DiscoveryError,
    WorkflowImportError,
    discover,
    load_plugins,
)
from phlo_dagster.settings import Settings

pytestmark = pytest.mark.unit

SPEC_MODULE = """
from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset
import {pkg} as _pkg
ORDER = getattr(_pkg, "ORDER", [])
ORDER.append(__name__)
_pkg.ORDER = ORDER
register_asset(AssetSpec(key="{key}", run=RunSpec(fn=lambda c: None)))
"""


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _settings(root: Path) -> Settings:
    return Settings(workflows_path=root, plugins_enabled=False)


def test_modules_imported_in_sorted_order(tmp_path):
    for rel, key in [("b.py", "x.b"), ("a.py", "x.a"), ("sub/c.py", "x.c"), ("a_z.py", "x.az")]:
        _write(tmp_path, rel, SPEC_MODULE.format(pkg=WORKFLOWS_PACKAGE, key=key))
    found = discover(_settings(tmp_path))
    assert [s.key for s in found.assets] == ["x.a", "x.az", "x.b", "x.c"]
    order = sys.modules[WORKFLOWS_PACKAGE].ORDER  # type: ignore[attr-defined]
    assert order == [
        f"{WORKFLOWS_PACKAGE}.a",
        f"{WORKFLOWS_PACKAGE}.a_z",
        f"{WORKFLOWS_PACKAGE}.b",
        f"{WORKFLOWS_PACKAGE}.sub.c",
    ]


def test_discovery_reruns_cleanly(tmp_path):
    _write(tmp_path, "a.py", SPEC_MODULE.format(pkg=WORKFLOWS_PACKAGE, key="x.a"))
    first = discover(_settings(tmp_path))
    second = discover(_settings(tmp_path))
    assert [s.key for s in first.assets] == [s.key for s in second.assets] == ["x.a"]


def test_broken_module_names_file_and_line_and_leaves_nothing(tmp_path):
    _write(tmp_path, "a.py", SPEC_MODULE.format(pkg=WORKFLOWS_PACKAGE, key="x.a"))
    broken = _write(
        tmp_path, "b.py", "import os\n\nvalue = 1\nraise RuntimeError('upstream API token missing')\n"
    )
    with pytest.raises(WorkflowImportError) as info:
        discover(_settings(tmp_path))
    message = str(info.value)
    assert f"{broken}:4" in message
    assert "RuntimeError: upstream API token missing" in message
    assert registry().assets == ()
    assert WORKFLOWS_PACKAGE not in sys.modules


def test_syntax_error_names_file_and_line(tmp_path):
    broken = _write(tmp_path, "bad.py", "x = 1\ndef oops(:\n    pass\n")
    with pytest.raises(WorkflowImportError) as info:
        discover(_settings(tmp_path))
    assert f"{broken}:2" in str(info.value)
    assert "SyntaxError" in str(info.value)


def test_error_inside_helper_points_at_workflow_frame(tmp_path):
    _write(tmp_path, "helpers.py", "def boom():\n    raise ValueError('bad config')\n")
    _write(tmp_path, "z_main.py", "from . import helpers\n\nhelpers.boom()\n")
    with pytest.raises(WorkflowImportError) as info:
        discover(_settings(tmp_path))
    assert f"{tmp_path / 'helpers.py'}:2" in str(info.value)
    assert "z_main.py" in str(info.value)


def test_bad_module_name_is_refused(tmp_path):
    _write(tmp_path, "my-flow.py", "x = 1\n")
    with pytest.raises(WorkflowImportError, match=r"'my-flow' is not a valid Python module name"):
        discover(_settings(tmp_path))


def test_plain_dagster_objects_collected(tmp_path):
    _write(
        tmp_path,
        "plain.py",
        """
        import dagster as dg

        @dg.asset(key=["plain", "thing"])
        def thing():
            return 1

        @dg.asset_check(asset=thing)
        def thing_ok():
            return dg.AssetCheckResult(passed=True)

        thing_job = dg.define_asset_job("thing_job", selection=[thing])
        daily = dg.ScheduleDefinition(job=thing_job, cron_schedule="0 1 * * *")

        @dg.sensor(job=thing_job)
        def watcher(context):
            return None

        @dg.op
        def hello():
            return 1

        @dg.job
        def hello_job():
            hello()
        """,
    )
    _write(tmp_path, "reexport.py", "from .plain import thing as same_thing\n")
    objects = discover(_settings(tmp_path)).dagster_objects
    assert len(objects.assets) == 1
    assert len(objects.asset_checks) == 1
    assert len(objects.schedules) == 1
    assert len(objects.sensors) == 1
    assert sorted(j.name for j in objects.jobs) == ["hello_job", "thing_job"]
    assert objects.source(objects.assets[0]) == "plain.py (thing)"


def test_missing_explicit_workflows_path_is_an_error(tmp_path):
    with pytest.raises(DiscoveryError, match=r"WORKFLOWS_PATH=.*no such directory"):
        discover(_settings(tmp_path / "nope"))


def test_missing_default_workflows_path_loads_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORKFLOWS_PATH", raising=False)
    found = discover(Settings(plugins_enabled=False))
    assert found.assets == () and found.modules == ()


def test_quickstart_plugin_is_found_through_its_entry_points(quickstart_plugin):
    loaded = load_plugins()
    assert "phlo.plugins.assets:quickstart" in loaded
    assert "phlo.plugins.resources:quickstart" in loaded
    snap = registry()
    assert "ref.regions" in [a.key for a in snap.assets]
    assert "region_catalog" in [r.name for r in snap.resources]
    from phlo_dagster.capabilities import source_of

    spec = next(a for a in snap.assets if a.key == "ref.regions")
    assert "entry point phlo.plugins.assets:quickstart" in source_of(spec)


def test_plugins_read_the_installed_entry_points_once(quickstart_plugin, monkeypatch):
    """Both plugin groups come from one read of the installed distributions' entry points (each read opens
    every distribution's metadata; a code server pays it at each start and reload). Red when load_providers
    asks importlib.metadata once per group again (checked: 2 reads)."""
    from phlo_dagster import discovery

    reads = []
    real = discovery.entry_points

    def counting(**kwargs):
        reads.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(discovery, "entry_points", counting)
    loaded = load_plugins()
    assert "phlo.plugins.assets:quickstart" in loaded and "phlo.plugins.resources:quickstart" in loaded
    assert len(reads) == 1


def test_orchestrator_entry_point_names_the_phlo_adapter_class():
    """Phlo's docs and discovery expect phlo_dagster.adapter:DagsterOrchestratorAdapter (it needs phlo)."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="phlo.plugins.orchestrators")}
    assert eps["dagster"] == "phlo_dagster.adapter:DagsterOrchestratorAdapter"
