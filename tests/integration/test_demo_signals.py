"""SIGTERM to `make demo` stops everything the demo started: `phlo dev`, the webserver, the daemon and the
code servers (make passes its SIGTERM on to the demo, which stops `phlo dev`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.integration.local_processes import start_logged, stop
from tests.operator_process import free_port

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def processes_in(folder: Path) -> dict[int, str]:
    """Live processes whose working directory is folder (the demo starts every service there)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != folder:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found[int(entry.name)] = command.strip()
    return found


def test_sigterm_to_make_demo_leaves_no_process(tmp_path: Path) -> None:
    project = tmp_path / "quickstart"
    ignore = shutil.ignore_patterns(".phlo", "target", "*.egg-info", "__pycache__")
    shutil.copytree(QUICKSTART, project, ignore=ignore)
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"demo:\n\t{sys.executable} -m phlo_dagster.demo\n")  # the repository's recipe
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env.update(PHLO_DEMO_PROJECT=str(project), DAGSTER_PORT=str(port), PHLO_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "demo.log"
    make = start_logged(["make", "-s", "-f", str(makefile), "demo"], cwd=tmp_path, env=env, log=log)
    try:
        deadline = time.monotonic() + 600
        # The demo's own last line (phlo dev's "instance: ...; press Ctrl-C to stop" comes before the demo
        # has materialized its first partition).
        while "\npress Ctrl-C to stop\n" not in log.read_text(errors="replace"):
            assert make.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(2)
        started = processes_in(project)
        assert any("phlo_dagster.cli dev" in c for c in started.values()), started
        assert any("phlo_dagster.cli daemon" in c for c in started.values()), started
        assert any("api grpc" in c for c in started.values()), started  # a code server
        assert stop(make, timeout=180) != 0  # SIGTERM to make alone, as `kill <pid of make>` sends it
        deadline = time.monotonic() + 30
        while processes_in(project) and time.monotonic() < deadline:
            time.sleep(1)
        assert processes_in(project) == {}, log.read_text()[-3000:]
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        for pid in processes_in(project):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
