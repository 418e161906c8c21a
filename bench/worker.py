"""One timed build in a fresh interpreter: ``worker.py IMPL N`` prints JSON {"specs_s", "build_s", "assets"}.

IMPL is ``ours`` (phlo_dagster.adapter from this repository), ``phlo`` (Phlo's own phlo-dagster 0.16.2, run
by the interpreter of the separate venv under .bench/) or ``native`` (Dagster's @asset/@asset_check).
Every implementation builds the same graph: N assets in a chain, each with group, description, kinds, tags,
metadata, a run function and one blocking function check. The build time covers the adapter (or the
decorators) plus resolving the repository, which is what a code server does before serving.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _timed_build(
    n: int, asset_spec: Any, check_spec: Any, run_spec: Any, adapter: Any, run: Any, check: Any
) -> tuple[float, float, int]:
    """The same chain of specs for ours and Phlo's adapter, so only the adapter differs between the two."""
    t0 = time.perf_counter()
    assets = [
        asset_spec(
            key=f"bench.a{i}",
            group="bench",
            description="benchmark asset",
            kinds={"python"},
            tags={"team": "bench"},
            metadata={"index": i},
            deps=[f"bench.a{i - 1}"] if i else [],
            run=run_spec(fn=run),
        )
        for i in range(n)
    ]
    checks = [check_spec(name="ok", asset_key=f"bench.a{i}", fn=check) for i in range(n)]
    t1 = time.perf_counter()
    defs = adapter.build_definitions(assets=assets, checks=checks, resources=[])
    repo = defs.get_repository_def()
    count = len(repo.asset_graph.get_all_asset_keys())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, count


def _ours(n: int) -> tuple[float, float, int]:
    from phlo_dagster.adapter import DagsterAdapter
    from phlo_dagster.capabilities import AssetCheckSpec, AssetSpec, MaterializeResult, RunSpec

    def run(context):
        return MaterializeResult()

    def check(context):
        return True

    return _timed_build(n, AssetSpec, AssetCheckSpec, RunSpec, DagsterAdapter(), run, check)


def _phlo(n: int) -> tuple[float, float, int]:
    from phlo.capabilities.specs import AssetCheckSpec, AssetSpec, MaterializeResult, RunSpec

    from phlo_dagster.adapter import (  # type: ignore[attr-defined]  # Phlo's package, in the .bench venv
        DagsterOrchestratorAdapter,
    )

    def run(context):
        return [MaterializeResult()]

    def check(context):
        return None

    return _timed_build(n, AssetSpec, AssetCheckSpec, RunSpec, DagsterOrchestratorAdapter(), run, check)


def _native(n: int) -> tuple[float, float, int]:
    import dagster as dg

    t0 = time.perf_counter()
    assets = []
    checks = []
    for i in range(n):
        key = dg.AssetKey(["bench", f"a{i}"])

        @dg.asset(
            key=key,
            group_name="bench",
            description="benchmark asset",
            kinds={"python"},
            tags={"team": "bench"},
            metadata={"index": i},
            deps=[dg.AssetKey(["bench", f"a{i - 1}"])] if i else None,
        )
        def _asset(context):
            return dg.MaterializeResult()

        @dg.asset_check(asset=key, name="ok", blocking=True)
        def _check(context):
            return dg.AssetCheckResult(passed=True)

        assets.append(_asset)
        checks.append(_check)
    defs = dg.Definitions(assets=assets, asset_checks=checks)
    repo = defs.get_repository_def()
    count = len(repo.asset_graph.get_all_asset_keys())
    t2 = time.perf_counter()
    return 0.0, t2 - t0, count


def main() -> None:
    impl, n = sys.argv[1], int(sys.argv[2])
    import logging

    logging.disable(logging.CRITICAL)  # Phlo's adapter logs per build; keep output to the JSON line
    import warnings

    warnings.simplefilter("ignore")
    build = {"ours": _ours, "phlo": _phlo, "native": _native}[impl]
    build(3)  # warm-up: one-time lazy imports inside Dagster are not part of the per-spec cost
    specs_s, build_s, count = build(n)
    sys.stdout.write(
        json.dumps({"impl": impl, "n": n, "specs_s": specs_s, "build_s": build_s, "assets": count})
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
