"""Import dagster-dbt without importing dbt-core into the process.

dagster-dbt imports most of dbt-core when it is imported (its ``compat`` module reads ``dbt.version`` and
imports dbt's adapter, result and node-type classes): 1.5 to 2 s of every code server, run worker and
``phlo materialize`` start on these machines, although nothing this package does in-process needs dbt-core:
dbt runs as a subprocess, and the manifest is plain JSON. dagster-dbt has a mode for environments without
dbt-core (dbt Fusion), in which those classes are string enums with the same values and a selection of every
node is read from the manifest. `dagster_dbt()` imports dagster-dbt in that mode, then gives back what the
mode loses: a selection other than "every node" (a user's ``@dbt_assets(select=...)``, ``phlo materialize
--dbt-select``) is resolved by dbt-core's own selector, imported at that moment, exactly as dagster-dbt
does when it sees dbt-core; and dbt-core's version is registered as dagster-dbt would register it.

When something imported dagster-dbt before (a workflow module's own ``import dagster_dbt``), nothing is
changed: that import already paid for dbt-core, and dagster-dbt keeps the mode it chose.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import cache
from types import ModuleType
from typing import Any

__all__ = ["dagster_dbt", "dbt_core_version"]

_VERSION_MODULE = "dbt.version"
# The modules of dagster 0.29.27's dagster-dbt that bind `select_unique_ids` by name (checked by a test).
_SELECTION_USERS = (
    "dagster_dbt.utils",
    "dagster_dbt.asset_utils",
    "dagster_dbt.dbt_manifest_asset_selection",
)


def dbt_core_version() -> str:
    """The installed dbt-core's version, from its distribution metadata (importing ``dbt.version`` loads
    half of dbt-core: 0.6 to 1.4 s here)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        raise ImportError("dbt-core is not installed beside phlo-dagster (pip install dbt-core)") from None


@cache
def dagster_dbt() -> ModuleType:
    """dagster-dbt, imported without dbt-core when this process has not imported it yet."""
    if "dagster_dbt" in sys.modules:
        import dagster_dbt as module

        return module
    hidden = sys.modules.get(_VERSION_MODULE)
    sys.modules[_VERSION_MODULE] = None  # type: ignore[assignment]  # `from dbt.version import` fails
    try:
        import dagster_dbt as module
    finally:
        if hidden is None:
            del sys.modules[_VERSION_MODULE]
        else:
            sys.modules[_VERSION_MODULE] = hidden
    _select_with_dbt_core()
    _register_dbt_core()
    return module


def _select_with_dbt_core() -> None:
    import dagster_dbt.utils as utils

    every_node = utils._is_select_all
    from_manifest = utils._select_unique_ids_from_manifest

    def select_unique_ids(
        select: str, exclude: str, selector: str, project: Any, manifest_json: Mapping[str, Any]
    ) -> Any:
        if every_node(select, exclude, selector):
            return set(manifest_json["nodes"])
        return from_manifest(select, exclude, selector, manifest_json, project)

    for name in _SELECTION_USERS:
        module = sys.modules[name]
        if not hasattr(module, "select_unique_ids"):
            raise RuntimeError(f"{name} has no select_unique_ids: this dagster-dbt is not the pinned one")
        module.select_unique_ids = select_unique_ids  # type: ignore[attr-defined]


def _register_dbt_core() -> None:
    from dagster._core.libraries import DagsterLibraryRegistry

    try:
        DagsterLibraryRegistry.register("dbt-core", dbt_core_version(), is_dagster_package=False)
    except ImportError:
        pass
