"""`phlo services start` runs the dbt-compile post-start hook for real; its reload makes dbt models appear."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } }
  ... on PythonError { message } } } } } }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str) -> dict[str, Any]:
    body = json.dumps({"query": query}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data["data"]


def test_dbt_compile_hook_compiles_and_reloads_the_location(tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, project, ignore=shutil.ignore_patterns(".phlo", "target", "*.egg-info"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env |= {
        "WORKFLOWS_PATH": "workflows",
        "PHLO_DBT_ENABLED": "true",
        "PHLO_DBT_PROJECT_DIR": "dbt",
        "PHLO_DBT_COMPILE_ON_LOAD": "false",  # without the hook the location cannot load: no manifest yet
        "PHLO_DATA_DIR": str(tmp_path / "data"),
    }
    port = free_port()

    def phlo(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "phlo_dagster.cli", *args]
        return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=600)

    assert phlo("services", "init", "--port", str(port)).returncode == 0
    start = phlo("services", "start", "--service", "dagster")
    try:
        assert start.returncode == 0, start.stderr[-3000:]
        assert "post-start hook dbt-compile" in start.stderr
        assert "dbt-compile: dbt compiled" in start.stderr, start.stderr[-3000:]
        assert (project / "dbt" / "target" / "manifest.json").is_file()
        entry = graphql(port, LOCATION)["workspaceOrError"]["locationEntries"][0]
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", location
        keys = {"/".join(n["assetKey"]["path"]) for r in location["repositories"] for n in r["assetNodes"]}
        assert "raw/orders" in keys
        assert any("stg_orders" in key for key in keys), keys
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b'dagster_code_location_load_errors{location="phlo"} 0.0' in resp.read()

        again = phlo("dbt", "compile")  # unchanged project: skipped by its content hash
        assert again.returncode == 0 and again.stdout.startswith("dbt skipped (unchanged)"), again.stdout
    finally:
        stop = phlo("services", "stop")
    assert "dagster: stopped" in stop.stdout
