"""The kind e2e scripts without Docker: the shared flow's GraphQL steps against `phlo dev`; e2e.sh refusal."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import flow

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(600)
def test_materialize_script_runs_an_asset_through_graphql(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "WORKFLOWS_PATH": str(QUICKSTART / "workflows"),
        "PHLO_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "phlo-dev.log"
    with log.open("w") as out:
        dev = subprocess.Popen(
            [str(Path(sys.executable).parent / "phlo"), "dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        flow.wait("phlo dev's webserver", lambda: flow.http_get(base + "/server_info", 5)[0] == 200, 300)
        assert "raw/orders" in flow.asset_keys(base), log.read_text()[-3000:]
        run_id = flow.launch(base, "raw/orders")
        assert flow.wait_run(base, run_id, 540) == "SUCCESS", log.read_text()[-3000:]
        assert any("loaded" in m for m in flow.run_messages(base, run_id))
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=10)


def test_e2e_script_is_valid_bash_and_stops_clearly_without_docker(tmp_path):
    script = REPO / "tests" / "kind" / "e2e.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    # A PATH with the shell utilities only: no docker, kind, kubectl or helm.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "sed", "head", "date"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    result = subprocess.run(
        ["/bin/bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "'docker' is not on PATH (this check needs Docker" in result.stderr
