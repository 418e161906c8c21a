"""Without phlo installed: plugin shapes, provider order, Phlo-style imports, structured logging, routing."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from phlo_dagster.capabilities import (
    LOG_FIELDS_ATTR,
    AssetSpec,
    RunSpec,
    RuntimeContext,
    StructuredLogger,
    registry,
)
from phlo_dagster.cli import add_plugin_commands
from phlo_dagster.cli_runs import partition_range
from phlo_dagster.console import CliError
from phlo_dagster.discovery import discover
from phlo_dagster.settings import Settings

pytestmark = pytest.mark.unit

CLI_PLUGINS = """
import click

class ClassPlugin:  # Phlo's cli_command_plugin_class shape: get_cli_commands is an instance method
    def get_cli_commands(self):
        return [click.Command("from-class", callback=lambda: None)]

class _Instance:
    def get_cli_commands(self):
        return [click.Command("from-instance", callback=lambda: None)]

INSTANCE = _Instance()

class Failing:
    def get_cli_commands(self):
        raise RuntimeError("backend down")

plain = click.Command("plain-command", callback=lambda: None)
"""

PROVIDER = """
from phlo_dagster.capabilities import AssetSpec, RunSpec

REGISTERED = []  # filled by workflow modules at import, as phlo-dlt's decorator does

def register(key):
    REGISTERED.append(AssetSpec(key=key, run=RunSpec(fn=lambda c: None)))

class Provider:
    def get_assets(self):
        return list(REGISTERED)

    def clear_registries(self):
        REGISTERED.clear()
"""


def _dist(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, text in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(text))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("cli_plugins", "broken_plugin", "order_provider"):
        sys.modules.pop(name, None)


def test_cli_plugins_of_every_shape_and_failures_are_one_warning(site, capsys) -> None:
    _dist(
        site,
        "cli_shapes",
        """
        [phlo.plugins.cli]
        klass = cli_plugins:ClassPlugin
        instance = cli_plugins:INSTANCE
        plain = cli_plugins:plain
        failing = cli_plugins:Failing
        broken = broken_plugin:Thing
        """,
        {"cli_plugins": CLI_PLUGINS, "broken_plugin": "raise ImportError('no such module: backend')\n"},
    )
    group = click.Group("phlo")
    add_plugin_commands(group)
    assert {"from-class", "from-instance", "plain-command"} <= set(group.commands)
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if "broken (broken_plugin:Thing)" in ln and "no such module" in ln] == [err[0]]
    assert len([ln for ln in err if "failing (cli_plugins:Failing)" in ln and "backend down" in ln]) == 1
    assert len(err) == 2 and all(ln.startswith("phlo: warning: CLI plugin") for ln in err)


def test_providers_are_asked_after_workflow_imports_and_reloads_repeat(site, tmp_path) -> None:
    _dist(
        site,
        "order_provider",
        "[phlo.plugins.assets]\norder = order_provider:Provider\n",
        {"order_provider": PROVIDER},
    )
    root = tmp_path / "workflows"
    root.mkdir()
    (root / "wf.py").write_text("import order_provider\norder_provider.register('dlt.users')\n")
    runs = [discover(Settings(workflows_path=root, plugins_enabled=True)) for _ in range(3)]
    for found in runs:
        assert [a.key for a in found.assets].count("dlt.users") == 1
        assert "phlo.plugins.assets:order" in found.plugins


def test_a_provider_that_fails_to_import_is_a_warning(site, tmp_path, caplog) -> None:
    _dist(
        site,
        "broken_assets",
        "[phlo.plugins.assets]\nbroken = broken_plugin:Assets\n",
        {"broken_plugin": "raise ImportError('gone')\n"},
    )
    root = tmp_path / "wf"
    root.mkdir()
    (root / "a.py").write_text(
        "from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset\n"
        "register_asset(AssetSpec(key='still.here', run=RunSpec(fn=lambda c: None)))\n"
    )
    with caplog.at_level(logging.WARNING, logger="phlo_dagster.discovery"):
        found = discover(Settings(workflows_path=root, plugins_enabled=True))
    assert "still.here" in [a.key for a in found.assets]
    lines = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(lines) == 1 and "phlo.plugins.assets:broken" in lines[0] and "ImportError: gone" in lines[0]


def test_workflow_modules_import_each_other_by_directory_name(tmp_path, monkeypatch) -> None:
    """`from workflows.x import y`, as in Phlo's docs: one module object imported once, cwd on path or not."""
    root = tmp_path / "workflows"
    (root / "core").mkdir(parents=True)
    (root / "core" / "base.py").write_text(
        "from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset\n"
        "IMPORTS = globals().setdefault('IMPORTS', 0) + 1\n"
        "register_asset(AssetSpec(key='base', run=RunSpec(fn=lambda c: None)))\n"
    )
    (root / "a_user.py").write_text(
        "from workflows.core.base import IMPORTS\n"
        "import workflows.core.base as base\n"
        "from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset\n"
        "register_asset(AssetSpec(key='user', deps=['base'], run=RunSpec(fn=lambda c: None)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # `workflows/` is also a namespace package on sys.path
    for _ in range(2):
        found = discover(Settings(workflows_path=root, plugins_enabled=False))
        assert sorted(a.key for a in found.assets) == ["base", "user"]
        assert sys.modules["workflows.core.base"] is sys.modules["phlo_workflows.core.base"]
        assert sys.modules["workflows.core.base"].IMPORTS == 1


def test_nothing_imports_phlo_without_it() -> None:
    code = (
        "import sys\n"
        "import phlo_dagster.cli, phlo_dagster.discovery, phlo_dagster.adapter, phlo_dagster.services\n"
        "from phlo_dagster.cli import phlo_core_cli, phlo_commands\n"
        "assert phlo_core_cli() is None and len(phlo_commands()) == 8\n"
        "from phlo_dagster.services import plugin_definitions\n"
        "assert [d.name for d in plugin_definitions()][:2] == ['dagster', 'dagster-daemon']\n"
        "assert not [m for m in sys.modules if m == 'phlo' or m.startswith('phlo.')], 'phlo imported'\n"
        # adapter.py is the path Phlo's entry point names: translate's names, the plugin class only on demand.
        "import phlo_dagster.translate\n"
        "assert phlo_dagster.adapter.DagsterAdapter is phlo_dagster.translate.DagsterAdapter\n"
        "assert 'phlo_dagster.phlo_plugin' not in sys.modules\n"
        "try:\n"
        "    phlo_dagster.adapter.DagsterOrchestratorAdapter\n"
        "except ModuleNotFoundError as exc:\n"
        "    assert exc.name.split('.')[0] == 'phlo', exc.name\n"
        "else:\n"
        "    raise AssertionError('DagsterOrchestratorAdapter resolved without phlo')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_runtime_logger_takes_keyword_fields_and_records_them(caplog) -> None:
    logger = logging.getLogger("phlo.test.structured")
    ctx = RuntimeContext(run_id="r", partition_key=None, tags={}, logger=logger, resources={})
    assert isinstance(ctx.logger, StructuredLogger)
    with caplog.at_level(logging.INFO, logger="phlo.test.structured"):
        ctx.logger.info("loaded_rows", row_count=3, table="main.events")
        ctx.logger.bind(step="s1").warning("slow %s", "query", seconds=2.5)
        ctx.logger.error("failed", exc_info=False)
    first, second, third = caplog.records
    assert first.getMessage() == "loaded_rows row_count=3 table=main.events"
    assert getattr(first, LOG_FIELDS_ATTR) == {"row_count": 3, "table": "main.events"}
    assert second.levelno == logging.WARNING and second.getMessage() == "slow query step=s1 seconds=2.5"
    assert third.getMessage() == "failed" and not hasattr(third, LOG_FIELDS_ATTR)


def test_routing_carries_tag_and_asset_capability_overrides() -> None:
    ctx = RuntimeContext(
        run_id="r",
        partition_key="2025-01-02",
        tags={"phlo/capability/catalog": "nessie", "ref": "dev"},
        logger=None,
        resources={},
        capability_overrides={"table_store": "iceberg", "catalog": "ignored"},
    )
    routing = ctx.routing
    assert dict(routing.capability_overrides) == {"catalog": "nessie", "table_store": "iceberg"}
    assert (routing.ref, routing.partition_key, routing.run_id) == ("dev", "2025-01-02", "r")


def test_register_asset_takes_objects_shaped_like_phlo_specs() -> None:
    from dataclasses import dataclass, field

    from phlo_dagster.capabilities import clear_capabilities, register_asset

    @dataclass(frozen=True)
    class PhloRunSpec:
        fn: object

    @dataclass(frozen=True)
    class PhloAssetSpec:  # same name as ours, another module: once "expects an AssetSpec, got AssetSpec"
        key: str
        group: str | None
        description: str | None
        capability_overrides: dict = field(default_factory=dict)
        run: PhloRunSpec | None = None

    clear_capabilities()
    spec = register_asset(
        PhloAssetSpec("raw.x", None, "d", {"table_store": "duckdb"}, PhloRunSpec(lambda c: None))
    )
    assert isinstance(spec, AssetSpec) and registry().assets == (spec,)
    assert dict(spec.metadata)["phlo/capability_overrides"] == {"table_store": "duckdb"}
    assert isinstance(spec.run, RunSpec)
    clear_capabilities()


def test_backfill_range_names_bad_bounds() -> None:
    import dagster as dg

    pdef = dg.StaticPartitionsDefinition(["a", "b", "c", "d"])
    assert partition_range(pdef, "b", "c") == ["b", "c"]
    assert partition_range(pdef, None, None) == ["a", "b", "c", "d"]
    with pytest.raises(CliError, match=r"--start x: not a partition \(partitions: a \.\. d\)"):
        partition_range(pdef, "x", None)
    with pytest.raises(CliError, match=r"--start c is after --end b"):
        partition_range(pdef, "c", "b")


def test_a_raising_cli_plugin_is_kept_from_phlo_016s_import_time_load(monkeypatch, capsys) -> None:
    """Phlo < 0.18 collects CLI commands as its CLI imports: a raising plugin is one warning, then []."""
    import types

    from phlo_dagster import cli

    class Raising:
        metadata = types.SimpleNamespace(name="raising")

        def get_cli_commands(self):
            raise RuntimeError("backend down")

    class Fine:
        metadata = types.SimpleNamespace(name="fine")

        def get_cli_commands(self):
            return [click.Command("fine-command", callback=lambda: None)]

    asked: list[dict[str, object]] = []

    def discover_plugins(**kwargs):
        asked.append(kwargs)
        return {"cli_command": [Raising(), Fine()]}

    fake = types.ModuleType("phlo.plugins.discovery")
    fake.discover_plugins = discover_plugins  # type: ignore[attr-defined]
    for name in ("phlo", "phlo.plugins"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "phlo.plugins.discovery", fake)
    cli.guard_cli_plugins_before_phlo_import()
    assert asked == [{"plugin_type": "cli_command", "auto_register": False, "failure_level": "debug"}]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "CLI plugin raising" in warnings[0] and "backend down" in warnings[0]
    assert Raising().get_cli_commands() == []  # what Phlo's import-time load then gets
    assert [c.name for c in Fine().get_cli_commands()] == ["fine-command"]


@pytest.mark.parametrize(("installed", "eager"), [("0.16.2", True), ("0.17.0", True), ("0.18.0", False)])
def test_which_phlo_loads_cli_plugins_on_import(monkeypatch, installed, eager) -> None:
    import importlib.metadata

    from phlo_dagster import cli

    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed)
    assert cli._phlo_loads_cli_plugins_on_import() is eager
