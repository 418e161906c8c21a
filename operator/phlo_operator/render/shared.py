"""Values several renderers put into their objects, computed once per render (bundle.shared builds them)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class LocationParts:
    """What a code location's renderers share: its code server, dbt Job and run pods."""

    env: list[
        dict[str, Any]
    ]  # its code server's env before its own entries: runtime settings, PG, the user's
    dbt_hash: str | None  # hash of its dbt compile's inputs; None: dbt is disabled
    dbt_init: (
        dict[str, Any] | None
    )  # the compile as a container: code-server and run pods' init, the Job's main


@dataclasses.dataclass(frozen=True)
class Shared:
    env: list[dict[str, Any]]  # every Dagster container's env: runtime settings, DAGSTER_PG_*, the user's
    instance: dict[str, Any]  # dagster.yaml
    workspace: dict[str, Any]  # workspace.yaml
    checksum: str  # of both files and the storage Secret name: a change rolls the Dagster pods
    # By location name.
    locations: dict[str, LocationParts] = dataclasses.field(default_factory=dict)
    # By component (Location.key for a code location): checksum of the ConfigMap/Secret content its pods read
    # (absent: none read).
    referenced: dict[str, str] = dataclasses.field(default_factory=dict)
    # The image the webserver and daemon run (status.instance.image while a new spec.image waits for its
    # migration); None: spec.image.
    instance_image: str | None = None

    def _first(self) -> LocationParts:
        return next(iter(self.locations.values()))

    @property
    def dbt_hash(self) -> str | None:
        """The first location's (the only one without spec.codeLocations)."""
        return self._first().dbt_hash

    @property
    def dbt_init(self) -> dict[str, Any] | None:
        return self._first().dbt_init
