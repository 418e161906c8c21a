"""One asset whose run reports the Dagster version it ran on: the real-node upgrade test runs it before and
after the move to a newer Dagster (tests/e2e/test_realnode_dagster_upgrade.py)."""

from __future__ import annotations

import dagster

from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, RuntimeContext, register_asset


def _report(context: RuntimeContext) -> MaterializeResult:
    context.logger.info(f"e2e ran on dagster {dagster.__version__}")
    return MaterializeResult(metadata={"dagster_version": dagster.__version__})


register_asset(
    AssetSpec(
        key="e2e.dagster_version",
        group="e2e",
        description="Records the Dagster version its run ran on.",
        run=RunSpec(fn=_report),
    )
)
