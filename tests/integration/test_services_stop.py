"""Stopping the local services stops what they started, even a code server in a session of its own."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from phlo_dagster.services import descendants, pid_alive, terminate_groups

pytestmark = pytest.mark.integration

# A service that starts a "code server" in a new session (as Dagster's may), reports its pid and keeps going;
# the code server outlives the service unless stopped by pid (killpg of the service's group misses it).
SERVICE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_code_server_in_its_own_session_is_stopped_with_its_service() -> None:
    """Mutation (2026-12-06): with terminate_groups signalling only the services and their groups (as before),
    the grandchild was still alive after it returned."""
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert service.stdout is not None
    code_server = int(service.stdout.readline())
    try:
        assert code_server in descendants([service.pid])
        terminate_groups([service.pid], timeout=20)
        service.wait(timeout=10)
        deadline = time.monotonic() + 10  # SIGKILLed at the latest when terminate_groups returns
        while pid_alive(code_server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(code_server)
    finally:
        for pid in (service.pid, code_server):
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)
