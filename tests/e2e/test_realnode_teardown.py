"""Last in the suite: stopping the real node leaves the host as it found it; up and down are idempotent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import HOST_BEFORE
from tests.testbed import cluster, realnode
from tests.testbed.realnode import RealNode


def _make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.testbed.realnode", target],
        cwd=cluster.REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_down_leaves_the_host_as_it_was_and_up_down_are_idempotent(node: RealNode) -> None:
    if not HOST_BEFORE:
        pytest.fail("the node was started outside this session (make realnode-up): stop it to run this test")
    assert (cluster.ROOT / "kubeconfig").exists()
    down = _make("down")
    assert down.returncode == 0 and "stopped" in down.stderr, down.stderr
    assert realnode.host_snapshot() == HOST_BEFORE
    assert "nothing recorded" in _make("down").stderr
    up = _make("up")
    assert up.returncode == 0, up.stderr[-3000:]
    again = _make("up")
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr[-3000:]
    assert _make("down").returncode == 0
    assert realnode.host_snapshot() == HOST_BEFORE
