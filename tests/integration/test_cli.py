"""The `phlo` console script as a subprocess: materialize, services, plugin, dbt compile, and its failures."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

pytestmark = pytest.mark.integration

WORKFLOW = """
from phlo_dagster.capabilities import AssetSpec, MaterializeResult, PartitionSpec, RunSpec, register_asset
from datetime import date


def load(context):
    context.logger.info("loading events")
    return MaterializeResult(metadata={"rows": 3, "partition": context.partition_key or ""})


def broken(context):
    raise RuntimeError("source unavailable")


register_asset(AssetSpec(key="raw.events", group="ingestion", run=RunSpec(fn=load)))
register_asset(AssetSpec(key="raw.broken", group="ingestion", run=RunSpec(fn=broken)))
register_asset(AssetSpec(key="raw.more", group="ingestion", run=RunSpec(fn=load)))
register_asset(
    AssetSpec(
        key="raw.daily",
        group="ingestion",
        partitions=PartitionSpec(kind="daily", start_date=date(2024, 1, 1), timezone="UTC"),
        run=RunSpec(fn=load),
    )
)
"""


def phlo(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_dagster.cli", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env["PHLO_PLUGINS_ENABLED"] = "false"
    return env


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, no traceback, and exactly one `phlo: error:` line that names the problem."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("phlo: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "events.py").write_text(WORKFLOW)
    return tmp_path


def runs_in(project: Path) -> list[tuple[str, DagsterRunStatus]]:
    with DagsterInstance.from_config(str(project / ".phlo")) as instance:
        return [(r.job_name, r.status) for r in instance.get_runs()]


def test_materialize_records_a_run_in_the_local_instance(project: Path) -> None:
    result = phlo("materialize", "raw.events", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "materialized raw/events" in result.stdout
    assert "phlo: materializing raw/events" in result.stderr  # progress
    assert "loading events" in result.stderr
    assert runs_in(project) == [("__ASSET_JOB", DagsterRunStatus.SUCCESS)]

    partitioned = phlo("materialize", "--select", "key:raw/daily", "--partition", "2024-01-03", cwd=project)
    assert partitioned.returncode == 0, partitioned.stderr
    assert "materialized raw/daily [2024-01-03]" in partitioned.stdout
    assert len(runs_in(project)) == 2

    several = phlo("materialize", "raw.events", "raw/more", cwd=project)
    assert several.returncode == 0, several.stderr
    assert "materialized raw/events" in several.stdout and "materialized raw/more" in several.stdout
    assert len(runs_in(project)) == 3  # one run for both


def test_progress_lines_do_not_depend_on_dagsters_compute_log_mirror(project: Path, tmp_path: Path) -> None:
    """Dagster mirrors a step's captured stderr back through `tail -F`, killed when the step ends; a slow
    `tail` (a busy machine) used to swallow the step's progress lines. They must reach stderr anyway."""
    slow_bin = tmp_path / "slow-bin"
    slow_bin.mkdir()
    slow_tail = slow_bin / "tail"
    slow_tail.write_text(f'#!/bin/sh\nsleep 3\nexec {shutil.which("tail")} "$@"\n')
    slow_tail.chmod(0o755)
    env = clean_env()
    env["PATH"] = f"{slow_bin}{os.pathsep}{env.get('PATH', '')}"
    result = phlo("materialize", "raw.events", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert "phlo: raw__events: loading events" in result.stderr
    assert 'phlo: raw__events: Finished execution of step "raw__events"' in result.stderr


def test_materialize_failures_are_one_line(project: Path) -> None:
    failed = phlo("materialize", "raw/broken", cwd=project)
    assert_one_line_failure(failed, "failed", "raw__broken", "RuntimeError: source unavailable")
    assert runs_in(project) == [("__ASSET_JOB", DagsterRunStatus.FAILURE)]

    assert_one_line_failure(phlo("materialize", "raw.nope", cwd=project), "'raw.nope'", "not defined")
    assert_one_line_failure(phlo("materialize", "raw.daily", cwd=project), "--partition", "required")
    assert_one_line_failure(
        phlo("materialize", "raw.daily", "--partition", "1999-01-01", cwd=project), "1999-01-01", "raw/daily"
    )
    assert_one_line_failure(phlo("materialize", "--select", "key:(", cwd=project), "--select")
    usage = phlo("materialize", "--bogus", cwd=project)
    assert usage.returncode == 2
    assert_one_line_failure(usage, "--bogus")


def test_broken_workflow_module_fails_with_one_line(project: Path) -> None:
    (project / "workflows" / "bad.py").write_text("import nonexistent_module_xyz\n")
    result = phlo("materialize", "raw.events", cwd=project)
    assert_one_line_failure(result, "bad.py", f"{project / 'workflows' / 'bad.py'}:1", "ModuleNotFoundError")


def test_dbt_compile_failure_names_the_setting(project: Path) -> None:
    env = {**clean_env(), "PHLO_DBT_PROJECT_DIR": str(project / "no-such-dbt")}
    assert_one_line_failure(phlo("dbt", "compile", cwd=project, env=env), "PHLO_DBT_PROJECT_DIR")


def test_dbt_compile_creates_a_missing_data_dir(project: Path) -> None:
    """The quickstart's dbt-duckdb profile opens PHLO_DATA_DIR/quickstart.duckdb even to compile."""
    quickstart_dbt = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "dbt"
    data_dir = project / "missing" / "data"
    env = {
        **clean_env(),
        "PHLO_DATA_DIR": str(data_dir),
        "PHLO_DBT_PROJECT_DIR": str(quickstart_dbt),
        "PHLO_DBT_TARGET_PATH": str(project / "dbt-target"),
    }
    result = phlo("dbt", "compile", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dbt compiled:") and data_dir.is_dir()
    (project / "blocker").write_text("a file where the directory would go")
    blocked = {**env, "PHLO_DATA_DIR": str(project / "blocker" / "data")}
    assert_one_line_failure(phlo("dbt", "compile", "--force", cwd=project, env=blocked), "PHLO_DATA_DIR=")


def test_plugin_list_shows_our_entry_points() -> None:
    result = phlo("plugin", "list", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    rows = [ln.split() for ln in result.stdout.splitlines()[1:]]
    assert ["services", "dagster", "phlo_dagster.phlo_plugin:DagsterServicePlugin", "phlo-dagster"] in [
        r[:4] for r in rows
    ]
    assert ["services", "dagster-daemon"] in [r[:2] for r in rows]
    assert ["orchestrators", "dagster"] in [r[:2] for r in rows]


def probe_plugin_wheel(directory: Path) -> Path:
    """A minimal wheel registering one phlo.plugins.assets entry point (built by hand: no network)."""
    name, version = "phlo_probe_plugin", "0.1.0"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "class Assets:\n    def get_assets(self):\n        return []\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: phlo-probe-plugin\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[phlo.plugins.assets]\nprobe = {name}:Assets\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_plugin_install_then_list(tmp_path: Path) -> None:
    """A real pip install, kept out of the shared environment by pip's own PIP_TARGET setting."""
    site = tmp_path / "site"
    env = {**clean_env(), "PIP_TARGET": str(site), "PIP_NO_INDEX": "1"}
    installed = phlo("plugin", "install", str(probe_plugin_wheel(tmp_path)), cwd=tmp_path, env=env)
    assert installed.returncode == 0, installed.stderr
    assert "Successfully installed phlo-probe-plugin-0.1.0" in installed.stdout
    listed = phlo("plugin", "list", cwd=tmp_path, env={**clean_env(), "PYTHONPATH": str(site)})
    assert listed.returncode == 0, listed.stderr
    rows = [ln.split() for ln in listed.stdout.splitlines()[1:]]
    assert ["assets", "probe", "phlo_probe_plugin:Assets", "phlo-probe-plugin", "0.1.0"] in rows


def test_plugin_install_failure_is_one_line(tmp_path: Path) -> None:
    result = phlo("plugin", "install", str(tmp_path / "missing-plugin"), cwd=tmp_path)
    assert_one_line_failure(result, "pip install", "missing-plugin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_services_start_status_stop(project: Path) -> None:
    port = free_port()
    init = phlo("services", "init", "--port", str(port), cwd=project)
    assert init.returncode == 0, init.stderr
    assert (project / ".phlo" / "services.yaml").is_file()

    start = phlo("services", "start", cwd=project, timeout=400)
    try:
        assert start.returncode == 0, start.stderr
        assert "post-start hook dbt-compile skipped" in start.stderr  # the hook ran (dbt disabled here)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"dagster_runs_queued" in resp.read()
        status = phlo("services", "status", cwd=project)
        assert status.returncode == 0
        assert "dagster: running pid" in status.stdout and " healthy" in status.stdout
        assert "dagster-daemon: running pid" in status.stdout
        pids = [
            int((project / ".phlo" / "run" / f"{s}.pid").read_text()) for s in ("dagster", "dagster-daemon")
        ]
        again = phlo("services", "start", "--service", "dagster", cwd=project)
        assert "already running" in again.stderr
        only = phlo("services", "status", "--service", "dagster-daemon", cwd=project)
        assert only.returncode == 0 and only.stdout.startswith("dagster-daemon: running pid")
        assert "dagster:" not in only.stdout
        daemon_stop = phlo("services", "stop", "--service", "dagster-daemon", cwd=project)
        assert daemon_stop.stdout.strip() == "dagster-daemon: stopped", daemon_stop.stderr
        partly = phlo("services", "status", cwd=project)
        assert "dagster: running pid" in partly.stdout and "dagster-daemon: stopped" in partly.stdout
        restarted = phlo("services", "start", "--service", "dagster-daemon", cwd=project)
        assert restarted.returncode == 0 and "dagster-daemon: running" in restarted.stdout, restarted.stderr
        pids.append(int((project / ".phlo" / "run" / "dagster-daemon.pid").read_text()))
    finally:
        stop = phlo("services", "stop", cwd=project)
    assert stop.returncode == 0, stop.stderr
    assert "dagster: stopped" in stop.stdout and "dagster-daemon: stopped" in stop.stdout
    for pid in pids:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    after = phlo("services", "status", cwd=project)
    assert "dagster: stopped" in after.stdout
    assert_one_line_failure(phlo("services", "start", "--service", "nope", cwd=project), "nope")
    with socket.socket() as squatter:  # someone else holds the port: refuse rather than health-check them
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the stopped server's TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        busy = phlo("services", "start", "--service", "dagster", cwd=project)
    assert_one_line_failure(busy, f"port {port}", "already in use")
