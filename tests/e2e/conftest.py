"""The real node of the end-to-end suite: the one `make realnode-up` left running, else a session's own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import flow
from tests.testbed import cluster, realnode
from tests.testbed.realnode import RealNode

ARTIFACTS = cluster.ROOT / "artifacts" / "e2e"


LAST = "test_realnode_teardown.py"  # stops the session's node, so no e2e module may run after it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    modules = []
    for item in items:
        if Path(str(item.fspath)).parent == here:
            for mark in (pytest.mark.e2e, pytest.mark.binaries, pytest.mark.node):
                item.add_marker(mark)
            modules.append(Path(str(item.fspath)).name)
    late = sorted(set(modules[modules.index(LAST) :]) - {LAST}) if LAST in modules else []
    if late:
        raise pytest.UsageError(f"{late} would run after {LAST} stopped the node: rename them to sort first")


# The host as it was before this session started a real node (None when it attached to a running one).
HOST_BEFORE: dict[str, object] = {}


@pytest.fixture(scope="session")
def node() -> Iterator[RealNode]:
    running = realnode.attach()
    if running is not None:
        realnode.load_images(running)
        yield running
        return
    realnode.stop_recorded()
    HOST_BEFORE.update(realnode.host_snapshot())
    started = realnode.start()
    try:
        yield started
    finally:
        realnode.stop_recorded()


@pytest.fixture(scope="module")
def cluster_flow(node: RealNode) -> Iterator[flow.Cluster]:
    """A fresh namespace (Pod Security "restricted" enforced) on the real node; objects and logs kept."""
    c = flow.Cluster(
        kubeconfig=node.bed.kubeconfig,
        namespace=f"e2e-{secrets.token_hex(3)}",
        artifacts=ARTIFACTS,
        bin_dir=cluster.BIN_DIR,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flow.create_namespace(c)
    try:
        yield c
    finally:
        c.collect()
        # Workflows first, while the operator still runs to take its finalizer off; then the release.
        c.k("delete", "pwf", "--all", "--timeout=120s", check=False, timeout=150)
        c.helm("uninstall", flow.RELEASE, "--namespace", c.namespace, "--ignore-not-found", check=False)
        c.kubectl("delete", "namespace", c.namespace, "--wait=false", check=False)
        # The chart keeps its CRD on uninstall (resource-policy keep); the next release must own a new one.
        c.kubectl(
            "delete", "crd", "phloworkflows.phlo.dev", "--ignore-not-found", "--wait=false", check=False
        )


def report_figures(scenario: str, figures: dict[str, Any]) -> None:
    """What a module's scenario measured: printed (seen with -s) and kept as <scenario>-figures.json."""
    print(f"\n{scenario} figures:", json.dumps(figures, indent=1))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{scenario}-figures.json").write_text(json.dumps(figures, indent=1) + "\n")
