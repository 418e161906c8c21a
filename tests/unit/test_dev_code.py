"""`phlo dev`'s shared code servers: which workspace entries get one, and the workspace the services read."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from phlo_dagster.console import CliError
from phlo_dagster.dev_code import CodeServer, shared_workspace, wait_serving
from phlo_dagster.services import workspace_config


def ports() -> itertools.count[int]:
    return itertools.count(41000)


def test_the_default_workspace_gets_one_code_server_both_services_share(tmp_path: Path) -> None:
    shared, servers = shared_workspace(workspace_config(tmp_path), tmp_path / ".phlo", ports().__next__)
    assert shared == {
        "load_from": [{"grpc_server": {"host": "127.0.0.1", "port": 41000, "location_name": "phlo"}}]
    }
    (server,) = servers
    assert server.location == "phlo" and server.port == 41000
    argv = list(server.argv)
    assert argv[:5] == [sys.executable, "-m", "dagster", "code-server", "start"]
    assert argv[argv.index("--module-name") + 1] == "phlo_dagster.definitions"
    assert argv[argv.index("--working-directory") + 1] == str(tmp_path)
    assert argv[argv.index("--port") + 1] == "41000"


def test_relative_paths_resolve_against_the_workspace_file_and_options_carry_over(tmp_path: Path) -> None:
    workspace = {
        "load_from": [
            {"python_file": {"relative_path": "defs.py", "location_name": "a", "attribute": "defs"}},
            {
                "python_package": {
                    "package_name": "pkg",
                    "location_name": "b",
                    "executable_path": "/venv/bin/python",
                }
            },
        ]
    }
    shared, servers = shared_workspace(workspace, tmp_path, ports().__next__)
    first, second = servers
    assert [s.location for s in servers] == ["a", "b"] and [s.port for s in servers] == [41000, 41001]
    assert first.argv[first.argv.index("--python-file") + 1] == str(tmp_path / "defs.py")
    assert first.argv[first.argv.index("--attribute") + 1] == "defs"
    assert second.argv[0] == "/venv/bin/python" and "--package-name" in second.argv
    assert [e["grpc_server"]["location_name"] for e in shared["load_from"]] == ["a", "b"]


@pytest.mark.parametrize(
    "entry",
    [
        {"python_module": "plain_module"},  # no explicit location name: Dagster derives one
        {"python_module": {"module_name": "m"}},
        {"python_module": {"module_name": "m", "location_name": "x", "executable_path": None}},
        {"python_module": {"module_name": "m", "location_name": "x", "some_new_key": 1}},
        {"grpc_server": {"host": "localhost", "port": 4000, "location_name": "remote"}},
    ],
)
def test_entries_it_does_not_fully_understand_pass_through_unchanged(entry: dict, tmp_path: Path) -> None:
    shared, servers = shared_workspace({"load_from": [entry]}, tmp_path, ports().__next__)
    assert servers == [] and shared == {"load_from": [entry]}


def test_a_code_server_that_exits_while_loading_is_an_error_naming_its_location() -> None:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    server = CodeServer("sales", ("x",), 1)
    with pytest.raises(CliError, match="code server of location sales exited with code 3"):
        wait_serving([server], {"sales": proc}, timeout=30)
