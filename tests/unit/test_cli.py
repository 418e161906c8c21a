"""`phlo` argument handling and failure formatting, in process (no servers started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey

from phlo_dagster.cli import local_instance, main, one_line, parse_asset_key
from phlo_dagster.console import CliError

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_asset_keys_accept_slash_and_dot_forms() -> None:
    assert parse_asset_key("raw/orders") == AssetKey(["raw", "orders"])
    assert parse_asset_key("raw.orders") == AssetKey(["raw", "orders"])
    assert parse_asset_key("orders") == AssetKey(["orders"])


def test_one_line_folds_and_truncates() -> None:
    assert one_line("a\n  b\n\nc") == "a b c"
    assert len(one_line("x" * 1000, limit=50)) == 50


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "--help")
    assert code == 0
    for command in (
        "dev",
        "materialize",
        "services",
        "plugin",
        "dbt",
        "webserver",
        "daemon",
        "backfill",
        "status",
        "logs",
    ):
        assert command in out


def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "services", "start", "--service", "postgres")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("phlo: error:") and "postgres" in err


def test_materialize_without_assets_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "materialize")
    assert code == 1
    assert err == (
        "phlo: error: give at least one ASSET (e.g. raw/orders), --select EXPR or a dbt selection "
        "(--dbt-select, --selector)\n"
    )


def test_bad_port_setting_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_PORT", "http")
    code, _out, err = run(capsys, "services", "init")
    assert code == 1
    assert err == "phlo: error: DAGSTER_PORT='http': not a port number\n"


def test_webserver_missing_workspace_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(capsys, "webserver", "--port", "1", "--workspace", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert err == f"phlo: error: --workspace {tmp_path / 'nope.yaml'}: no such file\n"


def test_daemon_is_dagsters_with_the_postgres_retry_budget(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`phlo daemon` (phlo dev's, phlo services' and the operator's daemon) installs the budget, then runs
    `dagster-daemon run -w WORKSPACE` (default: .phlo/workspace.yaml)."""
    from dagster._daemon.cli import run_command

    from phlo_dagster import postgres_retry

    calls: list[object] = []
    monkeypatch.setattr(postgres_retry, "install", lambda: calls.append("install"))
    monkeypatch.setattr(run_command, "main", lambda args, prog_name: calls.append((prog_name, args)))
    assert run(capsys, "daemon", "--workspace", "workspace.yaml")[0] == 0
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "daemon")[0] == 0
    default = str(tmp_path / ".phlo" / "workspace.yaml")
    assert calls == [
        "install",
        ("phlo daemon", ["-w", "workspace.yaml"]),
        "install",
        ("phlo daemon", ["-w", default]),
    ]


def test_daemon_with_a_bad_budget_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLO_POSTGRES_RETRY_SECONDS", "soon")
    code, _out, err = run(capsys, "daemon", "--workspace", "workspace.yaml")
    assert code == 1
    assert err == "phlo: error: PHLO_POSTGRES_RETRY_SECONDS='soon': expected a number of seconds >= 0\n"


def test_dev_rejects_missing_workflows_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(capsys, "dev", "--workflows-path", str(tmp_path / "missing"))
    assert code == 1
    assert "--workflows-path" in err and "no such directory" in err


@pytest.mark.parametrize(
    "args",
    [
        ("dev", "--port", "0"),
        ("dev", "--port", "99999"),
        ("services", "init", "--port", "70000"),
        ("services", "start", "--port", "-1"),
        ("webserver", "--port", "65536"),
    ],
)
def test_ports_out_of_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    code, _out, err = run(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and "'--port'" in err and "1<=x<=65535" in err


@pytest.mark.parametrize(
    ("host", "problem"),
    [("999.1.1.1", "not an address or resolvable name"), ("192.0.2.1", "not an address of this machine")],
)
def test_bad_host_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str, problem: str
) -> None:
    for args in (("dev", "--workflows-path", str(tmp_path)), ("webserver",)):
        code, _out, err = run(capsys, *args, "--host", host, "--port", "1")
        assert code == 1
        assert err.startswith(f"phlo: error: --host {host}: {problem}") and err.count("\n") == 1, err


def test_broken_instance_config_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".phlo").mkdir()
    (tmp_path / ".phlo" / "dagster.yaml").write_text("storage: {nosuch: {}}\n")
    with pytest.raises(CliError) as info:
        local_instance()
    assert str(info.value).startswith(f"{tmp_path / '.phlo' / 'dagster.yaml'}: DagsterInvalidConfigError:")
    assert "\n" not in str(info.value)


def test_demo_bad_port_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from phlo_dagster import demo

    monkeypatch.setenv("DAGSTER_PORT", "abc")
    with pytest.raises(SystemExit) as exit_info:
        demo.main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "phlo: error: DAGSTER_PORT='abc': not a port number\n"


def test_cli_entry_point_is_one_phlo_cli_plugin() -> None:
    """phlo.plugins.cli names our CliCommandPlugin (the target Phlo's help knows); it gives our commands."""
    from importlib.metadata import entry_points

    import click

    from phlo_dagster.cli import PHLO_COMMANDS, cli, phlo_commands

    eps = {
        ep.name: ep.value
        for ep in entry_points(group="phlo.plugins.cli")
        if ep.value.startswith("phlo_dagster.")
    }
    assert eps == {"dagster": "phlo_dagster.cli_plugin:DagsterCliPlugin"}
    commands = phlo_commands()
    assert [c.name for c in commands] == list(PHLO_COMMANDS)
    assert {"backfill", "status", "logs"} <= set(PHLO_COMMANDS)
    for command in commands:
        assert isinstance(command, click.Command) and command is cli.commands[command.name]


def test_exported_commands_fail_in_one_line_under_another_cli(tmp_path: Path, monkeypatch) -> None:
    """Under Phlo's root command our CliError must be a ClickException (one line, exit code kept)."""
    import click

    from phlo_dagster.cli import phlo_commands

    monkeypatch.chdir(tmp_path)
    root = click.Group("phlo")
    for command in phlo_commands():
        root.add_command(command)
    with pytest.raises(click.ClickException) as info:
        root.main(["materialize"], standalone_mode=False)
    assert "give at least one ASSET" in info.value.format_message()


def test_plugin_install_never_prints_url_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = f"git+file://builder:s3cret-token@{tmp_path}/no-such-repo#egg=nothing"
    code, out, err = run(capsys, "plugin", "install", missing)
    assert code == 1
    assert "s3cret-token" not in out + err
    assert "git+file://***@" in err


def test_dev_with_a_broken_instance_config_names_the_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "workflows").mkdir()
    (tmp_path / ".phlo").mkdir()
    (tmp_path / ".phlo" / "dagster.yaml").write_text("storage: {nosuch: {}}\n")
    code, _out, err = run(capsys, "dev", "--port", "1")
    assert code == 1
    assert err.startswith(f"phlo: error: {tmp_path / '.phlo' / 'dagster.yaml'}: DagsterInvalidConfigError:")
    assert err.count("\n") == 1
