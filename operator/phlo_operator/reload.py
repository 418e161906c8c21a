"""What the operator asks the Dagster webserver: reload a code location after a code-server rollout
(dagster#12376), and whether it has loaded it. Both go through phlo_dagster.graphql, the one GraphQL client
(standard library only, so the operator imports it without Dagster)."""

from __future__ import annotations

import os
from typing import NamedTuple

from phlo_dagster.graphql import ReloadFailed, post, reload_location
from phlo_dagster.text import first_line
from phlo_operator import vocabulary as v

__all__ = [
    "URL_OVERRIDE_ENV",
    "LocationState",
    "ReloadFailed",
    "location_state",
    "reload_location",
    "webserver_base",
]

# Tests (and operators running outside the cluster) point this at a reachable webserver base URL.
URL_OVERRIDE_ENV = "PHLO_OPERATOR_WEBSERVER_URL"


def webserver_base(in_cluster_url: str) -> str:
    return os.environ.get(URL_OVERRIDE_ENV) or in_cluster_url


WORKSPACE_QUERY = (
    "query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
    " locationOrLoadError { __typename ... on RepositoryLocation { serverId"
    " repositories { name jobs { name } } }"
    " ... on PythonError { message } } } } ... on PythonError { message } } }"
)


class LocationState(NamedTuple):
    """What the webserver says of one code location: loaded (with what), failed to load, or unknown."""

    loaded: bool
    reason: str  # a CodeLocationLoaded reason of vocabulary.py (LOADED, LOAD_ERROR, LOADING, ...)
    message: str


def location_state(
    base_url: str, location: str, server_id: str | None = None, timeout: float = 5.0
) -> LocationState:
    """Ask the webserver's GraphQL API whether it has loaded the location with at least one repository, from
    the code server with server_id when given (the webserver may still hold the previous code's snapshot)."""
    try:
        payload = post(base_url, WORKSPACE_QUERY, {}, timeout)
    except (OSError, ValueError) as exc:
        return LocationState(
            False, v.WEBSERVER_UNREACHABLE, f"the webserver does not answer GraphQL yet ({exc})"
        )
    workspace = (payload.get("data") or {}).get("workspaceOrError") or {}
    if workspace.get("__typename") != "Workspace":
        return LocationState(False, v.WEBSERVER_UNREACHABLE, f"the webserver has no workspace: {workspace}")
    for entry in workspace.get("locationEntries") or []:
        if entry.get("name") != location:
            continue
        result = entry.get("locationOrLoadError") or {}
        if result.get("__typename") == "PythonError":
            first = first_line(str(result.get("message", "")))
            return LocationState(False, v.LOAD_ERROR, f"code location {location} failed to load: {first}")
        repositories = result.get("repositories") or []
        if entry.get("loadStatus") != "LOADED" or result.get("__typename") != "RepositoryLocation":
            return LocationState(False, v.LOADING, f"the webserver is loading code location {location}")
        if not repositories:
            return LocationState(False, v.LOADING, f"code location {location} has no repository yet")
        if server_id and result.get("serverId") and result.get("serverId") != server_id:
            return LocationState(
                False, v.OUTDATED, f"the webserver still serves an earlier code server for {location}"
            )
        jobs = sum(len(r.get("jobs") or []) for r in repositories)
        return LocationState(True, v.LOADED, f"code location {location} loaded ({jobs} jobs)")
    return LocationState(False, v.NOT_IN_WORKSPACE, f"the webserver's workspace has no location {location}")
