"""Service definitions and the .phlo/ config: plain data, no processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from phlo_dagster.console import CliError
from phlo_dagster.services import (
    DBT_COMPILE_HOOK,
    DagsterDaemonServicePlugin,
    DagsterServicePlugin,
    PhloHome,
    ServiceDefinition,
    load_services,
    plugin_definitions,
    render_command,
    write_services_config,
)

pytestmark = pytest.mark.unit


def test_webserver_service_has_the_dbt_compile_post_start_hook() -> None:
    definition = DagsterServicePlugin().definition(3555)
    assert definition.name == "dagster"
    assert definition.ports == {"http": 3555}
    assert definition.health_check.kind == "http"
    assert [h.name for h in definition.post_start] == [DBT_COMPILE_HOOK]
    assert definition.post_start[0].command[-2:] == ("dbt", "compile")
    daemon = DagsterDaemonServicePlugin().definition()
    assert daemon.name == "dagster-daemon"
    assert daemon.command[1:5] == ("-m", "phlo_dagster.cli", "daemon", "--workspace")  # the PostgreSQL budget
    assert daemon.post_start == ()


def test_service_definition_round_trips_through_plain_data() -> None:
    for definition in (DagsterServicePlugin().definition(), DagsterDaemonServicePlugin().definition()):
        assert ServiceDefinition.from_dict(definition.to_dict()) == definition
    assert DagsterServicePlugin().service_definition["post_start"][0]["name"] == DBT_COMPILE_HOOK


def test_invalid_service_definition_names_the_service() -> None:
    with pytest.raises(CliError, match=r"service 'web'.*invalid"):
        ServiceDefinition.from_dict({"name": "web", "command": ["x"], "ports": {"http": "not-a-port"}})


def test_render_command_fills_placeholders() -> None:
    definition = DagsterServicePlugin().definition(4321)
    argv = render_command(
        definition.command, host="127.0.0.1", ports=definition.ports, workspace=Path("/w.yaml")
    )
    assert argv[0] == sys.executable
    assert argv[argv.index("--port") + 1] == "4321"
    assert argv[argv.index("--workspace") + 1] == "/w.yaml"
    assert not any("{" in part for part in argv)


def test_entry_points_publish_both_services() -> None:
    names = [d.name for d in plugin_definitions()]
    assert names == ["dagster", "dagster-daemon"]


def test_services_init_writes_instance_workspace_and_services(tmp_path: Path) -> None:
    home = PhloHome(tmp_path)
    path = write_services_config(home, port=3999)
    doc = yaml.safe_load(path.read_text())
    assert doc["settings"]["dev"] is False
    assert [s["name"] for s in doc["services"]] == ["dagster", "dagster-daemon"]
    instance = yaml.safe_load(home.dagster_yaml.read_text())
    assert instance["storage"]["sqlite"]["base_dir"] == str(home.root / "storage")
    assert instance["telemetry"] == {"enabled": False}
    workspace = yaml.safe_load(home.workspace_yaml.read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "phlo_dagster.definitions"
    assert home.storage_kind() == "sqlite"
    _settings, defs = load_services(home)
    assert defs[0].ports == {"http": 3999}
    assert load_services(home, port=4000)[1][0].ports == {"http": 4000}


def test_services_init_dev_puts_the_source_first_on_pythonpath(tmp_path: Path) -> None:
    source = tmp_path / "checkout"
    (source / "phlo_dagster").mkdir(parents=True)
    (source / "phlo_dagster" / "__init__.py").write_text("")
    home = PhloHome(tmp_path / "project")
    doc = yaml.safe_load(write_services_config(home, port=3000, dev=True, phlo_source=source).read_text())
    assert doc["settings"] == {"dev": True, "phlo_source": str(source), "host": "127.0.0.1"}
    assert all(s["env"]["PYTHONPATH"] == str(source) for s in doc["services"])


def test_services_init_rejects_bad_source_and_source_without_dev(tmp_path: Path) -> None:
    home = PhloHome(tmp_path)
    with pytest.raises(CliError, match=r"--phlo-source .*not a phlo-dagster checkout"):
        write_services_config(home, port=3000, dev=True, phlo_source=tmp_path / "empty")
    with pytest.raises(CliError, match="--phlo-source: only valid together with --dev"):
        write_services_config(home, port=3000, phlo_source=tmp_path)


def test_unreadable_services_yaml_is_named(tmp_path: Path) -> None:
    home = PhloHome(tmp_path)
    home.ensure_instance()
    home.services_yaml.write_text("services: [unclosed")
    with pytest.raises(CliError, match=r"services\.yaml: not valid YAML"):
        load_services(home)


@pytest.mark.parametrize(
    "text", ["- a list", "services: [1]", "services: {a: b}", "{services: [], settings: 3}"]
)
def test_services_yaml_of_the_wrong_shape_is_named(tmp_path: Path, text: str) -> None:
    home = PhloHome(tmp_path)
    home.ensure_instance()
    home.services_yaml.write_text(text)
    with pytest.raises(CliError, match=r"services\.yaml: "):
        load_services(home)
