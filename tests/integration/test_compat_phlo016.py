"""Phlo 0.16.2's own spec dataclasses (the real package from PyPI) through our adapter and discovery.

phlo==0.16.2 is installed with ``pip install --no-deps --target .testbed/phlo016`` so its ``phlo`` console
script never lands on PATH or replaces ours; tests put that directory on sys.path / PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from phlo_dagster.adapter import SEVERITY_METADATA, DagsterAdapter
from phlo_dagster.discovery import discover
from phlo_dagster.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PHLO_DIR = REPO / ".testbed" / "phlo016"
PHLO_VERSION = "0.16.2"


@pytest.fixture(scope="module")
def phlo_path() -> Path:
    """phlo 0.16.2 installed into its own directory (no console script on PATH), added to sys.path."""
    if not (PHLO_DIR / "phlo" / "capabilities" / "specs.py").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(PHLO_DIR),
                f"phlo=={PHLO_VERSION}",
            ],
            check=True,
            timeout=600,
        )
    sys.path.insert(0, str(PHLO_DIR))
    try:
        yield PHLO_DIR
    finally:
        sys.path.remove(str(PHLO_DIR))
        for name in [n for n in sys.modules if n == "phlo" or n.startswith("phlo.")]:
            del sys.modules[name]


def test_real_phlo_version(phlo_path):
    from importlib.metadata import distribution

    dist = distribution("phlo")
    assert dist.version == PHLO_VERSION
    ours = Path(sys.executable).parent / "phlo"
    assert "phlo_dagster.cli" in ours.read_text(), "our phlo console script was replaced"


def test_phlo_specs_build_and_run(phlo_path):
    from phlo.capabilities import specs as ps

    def run(context):
        assert context.get_resource("db") == "conn"
        return [
            ps.MaterializeResult(metadata={"rows": 7}, status="success"),
            ps.CheckResult(check_name="declared", asset_key="raw.events", passed=True, severity="error"),
        ]

    def warn_check(context):
        return ps.CheckResult(check_name="soft", asset_key="raw.events", passed=False, severity="warning")

    asset = ps.AssetSpec(
        key="raw.events",
        group="ingestion",
        description="events",
        kinds={"python"},
        tags={"team": "a"},
        metadata={"owner": "x"},
        capability_overrides={"table_store": "iceberg"},
        partitions=ps.PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="Europe/London"),
        resources={"db"},
        run=ps.RunSpec(fn=run, max_retries=2, retry_delay_seconds=3, freshness_hours=(6, 12)),
        checks=[ps.AssetCheckSpec(name="declared", asset_key="raw.events")],
    )
    check = ps.AssetCheckSpec(
        name="soft", asset_key="raw.events", fn=warn_check, blocking=False, severity="warning"
    )
    resource = ps.ResourceSpec(name="db", resource="conn")

    defs = DagsterAdapter().build_definitions(assets=[asset], checks=[check], resources=[resource])
    key = dg.AssetKey(["raw", "events"])
    graph = defs.get_repository_def().asset_graph
    node = graph.get(key)
    assert node.group_name == "ingestion" and node.metadata["phlo/capability_overrides"] == {
        "table_store": "iceberg"
    }
    assert node.partitions_def.timezone == "Europe/London"
    assert node.freshness_policy is not None
    assert graph.get_check_spec(dg.AssetCheckKey(key, "soft")).metadata[SEVERITY_METADATA] == "WARN"

    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],  # type: ignore[list-item]
        partition_key="2024-01-02",
        resources={"db": "conn"},
        raise_on_error=False,
    )
    assert result.success
    mat = result.get_asset_materialization_events()[0].materialization
    assert mat.metadata["rows"] == dg.IntMetadataValue(7)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["declared"].passed is True
    assert evals["soft"].passed is False and evals["soft"].severity == dg.AssetCheckSeverity.WARN


def test_phlo_partition_without_start_keeps_phlo_default(phlo_path):
    from phlo.capabilities import specs as ps

    asset = ps.AssetSpec(
        key="raw.legacy",
        group=None,
        description=None,
        partitions=ps.PartitionSpec(kind="daily"),
        run=ps.RunSpec(fn=lambda c: []),
    )
    defs = DagsterAdapter().build_definitions(assets=[asset], checks=[], resources=[])
    pdef = defs.get_repository_def().asset_graph.get(dg.AssetKey(["raw", "legacy"])).partitions_def
    assert pdef.get_first_partition_key() == "2025-01-01"


PLUGIN = """
from phlo.capabilities.specs import AssetCheckSpec, AssetSpec, MaterializeResult, ResourceSpec, RunSpec


def _run(context):
    yield MaterializeResult(metadata={"source": context.get_resource("legacy_api")})


class Assets:
    def get_assets(self):
        return [AssetSpec(key="legacy.orders", group="legacy", description="from a Phlo 0.16 plugin",
                          resources={"legacy_api"}, run=RunSpec(fn=_run))]

    def get_checks(self):
        return [AssetCheckSpec(name="always", asset_key="legacy.orders", fn=lambda c: True, severity="info")]


class Resources:
    def get_resources(self):
        return [ResourceSpec(name="legacy_api", resource="https-free-fake")]
"""


@pytest.fixture
def legacy_plugin(tmp_path, phlo_path) -> Path:
    """A Phlo-style plugin installed as a path distribution (dist-info with entry points) on sys.path."""
    site = tmp_path / "site"
    dist = site / "phlo_legacy_plugin-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: phlo-legacy-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[phlo.plugins.assets]\nlegacy = phlo_legacy_plugin:Assets\n\n"
        "[phlo.plugins.resources]\nlegacy = phlo_legacy_plugin:Resources\n"
    )
    (site / "phlo_legacy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("phlo_legacy_plugin", None)


def test_installed_phlo_plugin_is_discovered(legacy_plugin, tmp_path):
    (tmp_path / "wf").mkdir()
    found = discover(Settings(workflows_path=tmp_path / "wf", plugins_enabled=True))
    keys = [a.key for a in found.assets]
    assert "legacy.orders" in keys
    legacy = next(a for a in found.assets if a.key == "legacy.orders")
    assert legacy.description == "from a Phlo 0.16 plugin"
    assert [c.severity for c in found.checks if c.name == "always"] == ["WARN"]


def test_installed_phlo_plugin_materializes_through_the_code_location(legacy_plugin, phlo_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "DAGSTER_", "WORKFLOWS_"))}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(legacy_plugin), str(phlo_path), str(REPO)]),
            "WORKFLOWS_PATH": str(tmp_path / "no-workflows"),
        }
    )
    (tmp_path / "no-workflows").mkdir()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "phlo_dagster.definitions",
            "--select",
            "legacy/orders",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance = dg.DagsterInstance.get()
        event = instance.get_latest_materialization_event(dg.AssetKey(["legacy", "orders"]))
    finally:
        del os.environ["DAGSTER_HOME"]
    assert event is not None
    assert event.asset_materialization.metadata["source"].value == "https-free-fake"
