"""Shared fixtures: the real Kubernetes test bed, a fresh namespace per test, and PostgreSQL."""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed import cluster, state
from tests.testbed import postgres as pg
from tests.testbed.cluster import Testbed
from tests.testbed.postgres import Postgres


@pytest.fixture(autouse=True)
def default_sigterm() -> None:
    """Every test starts with SIGTERM at its default, as a shell leaves it for the processes a user starts.

    Dagster's in-process execution (execute_in_process, `phlo materialize` called in-process) copies SIGINT's
    handler onto SIGTERM when it restores its interrupt handlers; where the test run's SIGINT is ignored (a
    `make test` started in the background, as CI does), SIGTERM stayed ignored in this process and in every
    process a later test started, so they could not be stopped by SIGTERM: `make demo` never passed one on
    (test_demo_signals failed in every CI run of 2026-12-06, never alone).

    Mutation (2026-12-06): without it, `pytest tests/integration/test_compat_phlo016.py
    tests/integration/test_demo_signals.py` started with SIGINT ignored failed the demo test (make waited out
    the test's 180 s); with it, 6 passed in 39 s.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# kwok's pods serve nothing: operators the integration tests start (as processes) count pods available as
# Ready instead of asking a webserver for its code location. The real-node suite (tests/e2e) runs the
# operator from the chart, where the check is on; tests/unit/test_reconcile.py covers its decisions.
os.environ.setdefault("PHLO_OPERATOR_CODE_LOCATION_CHECK", "false")

# Fixtures needing the test bed's Go binaries (tests/testbed/build.sh): a test using one (directly or through
# another fixture) is marked ``binaries``. `make test` runs the other tests while the binaries build.
BINARY_FIXTURES = frozenset({"testbed", "node", "private_bed"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BINARY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.binaries)


@pytest.fixture
def private_bed(tmp_path: Path) -> Iterator[Testbed]:
    """A control plane of the test's own, CRDs applied: for tests that restart its API server and etcd, or
    count apiserver_request_total (on the session's bed the namespace controller keeps LISTing every kind in
    namespaces earlier tests deleted, which the counter cannot tell from the operator's reads)."""
    bed = cluster.start(tmp_path / "bed")
    try:
        bed.apply_crds()
        yield bed
    finally:
        bed.stop()


def _session_dir() -> Path:
    """Per-session directory for a bed this session owns (so parallel sessions never share state)."""
    return cluster.ROOT / "sessions" / str(os.getpid())


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """The bed from `make testbed-up` if alive, else one started for this session and stopped after."""
    shared = cluster.attach(cluster.ROOT)
    if shared is not None:
        yield shared
        return
    cluster.prune_sessions()
    directory = _session_dir()
    bed = cluster.start(directory)
    try:
        yield bed
    finally:
        bed.stop()
        state.update(directory, "cluster", None)


def _namespace_name(node_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-") or "test"
    return f"{stem}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def crds(testbed: Testbed) -> None:
    """The repository's CRDs on the session's bed (again per module: a chart test may remove them)."""
    testbed.apply_crds()


@pytest.fixture
def namespace(testbed: Testbed, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    name = _namespace_name(request.node.name)
    testbed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def quickstart_plugin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """The quickstart's example plugin, which the venv never holds, as `make demo` sees it: a distribution
    found through its entry points, on sys.path for this test and in the PYTHONPATH value returned for the
    processes it starts."""
    from phlo_dagster.demo import PLUGIN_DIR, QUICKSTART, plugin_pythonpath

    paths = plugin_pythonpath(QUICKSTART / PLUGIN_DIR, tmp_path_factory.mktemp("quickstart-plugin"))
    for path in reversed(paths):
        monkeypatch.syspath_prepend(str(path))
    return os.pathsep.join(str(p) for p in paths)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """The PostgreSQL from `make testbed-up` if alive, else one started for this session."""
    shared = pg.attach(cluster.ROOT)
    if shared is not None:
        yield shared
        return
    directory = _session_dir()
    server = pg.start(directory / "postgres", directory)
    try:
        yield server
    finally:
        server.stop()
        state.update(directory, "postgres", None)


@pytest.fixture(scope="session")
def postgres(postgres_server: Postgres) -> Postgres:
    """host, port, user, password, create_database(name) -> DSN, params(database) -> dict."""
    return postgres_server
