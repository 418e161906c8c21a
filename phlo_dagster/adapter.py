"""``phlo_dagster.adapter``, the module path Phlo's orchestrator entry point names (as phlo-dagster 0.16 did).

``DagsterOrchestratorAdapter`` is the Phlo plugin class (phlo_plugin.py, which imports phlo), so it is
imported only when asked for: a Dagster process that never asks for it never imports phlo. The translation
itself is translate.py, re-exported here for code that imports it from this path.
"""

from __future__ import annotations

from typing import Any

from phlo_dagster.translate import (
    MAX_RUNTIME_TAG,
    SEVERITY_METADATA,
    TAGS_METADATA,
    DagsterAdapter,
    Translation,
    asset_key,
    gc_paused,
    partitions_definition,
)

__all__ = [
    "MAX_RUNTIME_TAG",
    "SEVERITY_METADATA",
    "TAGS_METADATA",
    "DagsterAdapter",
    "Translation",
    "asset_key",
    "gc_paused",
    "partitions_definition",
]


def __getattr__(name: str) -> Any:
    """``DagsterOrchestratorAdapter``, resolved from phlo_plugin.py on first use (it imports phlo)."""
    if name == "DagsterOrchestratorAdapter":
        from phlo_dagster.phlo_plugin import DagsterOrchestratorAdapter

        return DagsterOrchestratorAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
