"""`phlo dev` on tests/fixtures/dbt_shop sees a model added while it runs: its file watch recompiles and
reloads the code location, and so does "Reload" (the code server compiles changed inputs while it loads)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from phlo_dagster import graphql
from tests.integration.local_processes import start_logged, stop
from tests.integration.test_dbt_projects import (
    env_for,
    shop_project,  # noqa: F401 (the `project` fixture)
    wait_for_line,
)
from tests.operator_process import free_port

pytestmark = pytest.mark.integration

LOYALTY = "select customer_id, order_count from {{ ref('customers') }}\n"
ASSET_KEYS = "{ assetNodes { assetKey { path } } }"


def asset_keys(url: str) -> set[str]:
    payload = graphql.post(url, ASSET_KEYS, {}, timeout=60)
    assert not payload.get("errors"), payload
    return {"/".join(node["assetKey"]["path"]) for node in payload["data"]["assetNodes"]}


def dev(project: Path, log: Path, *args: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [sys.executable, "-m", "phlo_dagster.cli", "dev", "--port", str(port), *args]
    proc = start_logged(argv, cwd=project, env=env_for(project), log=log)
    return f"http://127.0.0.1:{port}", proc


def test_a_model_added_while_dev_runs_is_compiled_and_served(project: Path, tmp_path: Path) -> None:
    """Mutation (2026-12-02): with the watch not started (run_dev's `files` None), no "reloaded with the new
    dbt manifest" line came within the wait and the UI's assets lacked loyalty_tiers."""
    log = tmp_path / "dev.log"
    url, proc = dev(project, log)
    try:
        wait_for_line(proc, log, "phlo: code location phlo loaded", timeout=400)
        assert "loyalty_tiers" not in asset_keys(url)
        (project / "shop" / "models" / "marts" / "loyalty_tiers.sql").write_text(LOYALTY)
        reloaded = "phlo: code location phlo reloaded with the new dbt manifest"
        text = wait_for_line(proc, log, reloaded, timeout=300)
        assert "phlo: dbt project changed (shop/models/marts/loyalty_tiers.sql): compiling" in text, text
        assert "loyalty_tiers" in asset_keys(url)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]


def test_reload_compiles_a_changed_project(project: Path, tmp_path: Path) -> None:
    """The UI's "Reload" (GraphQL reloadRepositoryLocation) with the watch off serves a model added since.

    Mutation (2026-12-02): with the code server compiling only when no manifest exists (as before), the
    reloaded location still lacked loyalty_tiers."""
    log = tmp_path / "dev.log"
    url, proc = dev(project, log, "--no-watch")
    try:
        wait_for_line(proc, log, "phlo: code location phlo loaded", timeout=400)
        (project / "shop" / "models" / "marts" / "loyalty_tiers.sql").write_text(LOYALTY)
        graphql.reload_location(url, "phlo", timeout=300)
        deadline = time.monotonic() + 120
        while "loyalty_tiers" not in (keys := asset_keys(url)) and time.monotonic() < deadline:
            time.sleep(1)  # the reload answered when the new code server loaded; the workspace may lag
        assert "loyalty_tiers" in keys, sorted(keys)
        assert "dbt project changed" not in log.read_text()
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
