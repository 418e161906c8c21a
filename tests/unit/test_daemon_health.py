"""The daemon's health endpoint (phlo_dagster.daemon), on a real Dagster instance: the Kubernetes probes of
the daemon ask it instead of starting `dagster-daemon liveness-check` (a new Python process) for each probe.

Mutations (2026-12-06): with Health.check answering live whatever the heartbeats, the first test failed (200
with no heartbeat); with the path check removed, the 404 assertion failed."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat

from phlo_dagster.constants import DAEMON_HEALTH_PATH
from phlo_dagster.daemon import Health, serve_health

pytestmark = pytest.mark.unit


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def base(instance: dg.DagsterInstance) -> Iterator[str]:
    server = serve_health("127.0.0.1", 0, Health(instance))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _beat(instance: dg.DagsterInstance, at: float) -> None:
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(timestamp=at, daemon_type=daemon_type, daemon_id="test", errors=[])
        )


def test_live_only_once_every_required_daemon_has_a_fresh_heartbeat(
    instance: dg.DagsterInstance, base: str
) -> None:
    assert _get(base + DAEMON_HEALTH_PATH) == (503, "daemon heartbeats missing or stale\n")
    _beat(instance, time.time() - 3600)  # an hour old: a daemon that stopped long ago
    assert _get(base + DAEMON_HEALTH_PATH)[0] == 503
    _beat(instance, time.time())
    assert _get(base + DAEMON_HEALTH_PATH) == (200, "daemon live\n")


def test_other_paths_are_not_found(base: str) -> None:
    assert _get(base + "/")[0] == 404
    assert _get(base + DAEMON_HEALTH_PATH + "x")[0] == 404


def test_an_unreadable_instance_is_not_live_and_says_so_without_a_traceback() -> None:
    class Broken:
        def get_required_daemon_types(self) -> list[str]:
            raise ConnectionError("could not connect to server")

    live, reason = Health(Broken()).check()
    assert (live, reason) == (False, "instance unreadable: ConnectionError")
