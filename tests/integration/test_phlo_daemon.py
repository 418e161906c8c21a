"""`phlo daemon`: Dagster's daemon in one process with its health endpoint, as the operator runs it in the
daemon pod (its readiness and liveness probes GET /healthz there; tests/e2e sees that pod Ready on the node).

Mutation (2026-12-06): with `phlo daemon` running the daemon without serve_health, the health wait failed
(connection refused until the timeout)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance

from phlo_dagster.constants import DAEMON_HEALTH_PATH
from tests.integration.test_cli import clean_env
from tests.integration.test_operator import wait_for

pytestmark = pytest.mark.integration

DEFINITIONS = """
import dagster as dg


@dg.asset
def one():
    return 1


defs = dg.Definitions(assets=[one], schedules=[dg.ScheduleDefinition(
    name="daily", target=[one], cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING
)])
"""


PHLO_DAEMON = (sys.executable, "-m", "phlo_dagster.cli", "daemon")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_phlo_daemon_serves_health_once_its_daemons_beat_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "defs.py").write_text(DEFINITIONS)
    workspace = tmp_path / "workspace.yaml"
    defs = tmp_path / "defs.py"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {defs}\n      location_name: one\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The storage exists before the daemon and its code server start: two processes creating a fresh SQLite
    # storage at once race in Dagster's schema migration (an alembic CommandError from the code server).
    DagsterInstance.from_config(str(home)).dispose()
    port = _free_port()
    url = f"http://127.0.0.1:{port}{DAEMON_HEALTH_PATH}"
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [
            *PHLO_DAEMON,
            "--workspace",
            str(workspace),
            "--health-host",
            "127.0.0.1",
            "--health-port",
            str(port),
        ],
        cwd=tmp_path,
        env={**clean_env(), "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for("the daemon's health endpoint to answer", lambda: _health(url) is not None, timeout=120)
        # Every required daemon (scheduler, sensors, backfills, ...) writes its first heartbeat on start.
        wait_for("the daemon to be live", lambda: _health(url) == 200, timeout=180, every=1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "daemon.log").read_text()
    assert "SchedulerDaemon" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_phlo_daemon_refuses_a_health_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [*PHLO_DAEMON, "--health-host", "127.0.0.1", "--health-port", str(port), "--workspace", "w.yaml"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"--health-port {port}: 127.0.0.1:{port} is already in use" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
