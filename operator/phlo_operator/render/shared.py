"""Values several renderers put into their objects, computed once per render (bundle.shared builds them)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Shared:
    env: list[dict[str, Any]]  # every Dagster container's env: runtime settings, DAGSTER_PG_*, the user's
    dbt_hash: str | None  # hash of the dbt compile's inputs; None: dbt is disabled
    dbt_init: (
        dict[str, Any] | None
    )  # the compile as a container: code-server and run pods' init, the Job's main
    instance: dict[str, Any]  # dagster.yaml
    workspace: dict[str, Any]  # workspace.yaml
    checksum: str  # of both files and the storage Secret name: a change rolls the Dagster pods
    # By component: checksum of the ConfigMap/Secret content its pods read (absent: none read).
    referenced: dict[str, str] = dataclasses.field(default_factory=dict)
