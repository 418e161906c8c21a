"""Ask the Dagster webserver to reload the code location after a code-server rollout (dagster#12376)."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any, NamedTuple

# Tests (and operators running outside the cluster) point this at a reachable webserver base URL.
URL_OVERRIDE_ENV = "PHLO_OPERATOR_WEBSERVER_URL"
MUTATION = (
    "mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {"
    " __typename ... on WorkspaceLocationEntry { name } ... on PythonError { message } } }"
)


class ReloadFailed(Exception):
    """The webserver could not be asked to reload; the rollout itself is fine."""


def webserver_base(in_cluster_url: str) -> str:
    return os.environ.get(URL_OVERRIDE_ENV) or in_cluster_url


def _post(base_url: str, query: str, variables: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST one GraphQL document to the webserver; the decoded payload (OSError, ValueError on failure)."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(
        base_url.rstrip("/") + "/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        payload = json.loads(resp.read() or b"{}")
    return payload if isinstance(payload, dict) else {}


def reload_location(base_url: str, location: str, timeout: float = 5.0) -> str:
    """POST the reloadRepositoryLocation mutation; returns the result's __typename."""
    try:
        payload = _post(base_url, MUTATION, {"name": location}, timeout)
    except (OSError, ValueError) as exc:
        raise ReloadFailed(f"{base_url}: {exc}") from None
    result = (payload.get("data") or {}).get("reloadRepositoryLocation") or {}
    typename = str(result.get("__typename", ""))
    if payload.get("errors") or typename != "WorkspaceLocationEntry":
        raise ReloadFailed(f"{base_url}: {payload.get('errors') or result}")
    return typename


WORKSPACE_QUERY = (
    "query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
    " locationOrLoadError { __typename ... on RepositoryLocation { serverId"
    " repositories { name jobs { name } } }"
    " ... on PythonError { message } } } } ... on PythonError { message } } }"
)


class LocationState(NamedTuple):
    """What the webserver says of one code location: loaded (with what), failed to load, or unknown."""

    loaded: bool
    reason: str  # Loaded | LoadError | Loading | NotInWorkspace | WebserverUnreachable
    message: str


def location_state(
    base_url: str, location: str, server_id: str | None = None, timeout: float = 5.0
) -> LocationState:
    """Ask the webserver's GraphQL API whether it has loaded the location with at least one repository, from
    the code server with server_id when given (the webserver may still hold the previous code's snapshot)."""
    try:
        payload = _post(base_url, WORKSPACE_QUERY, {}, timeout)
    except (OSError, ValueError) as exc:
        return LocationState(
            False, "WebserverUnreachable", f"the webserver does not answer GraphQL yet ({exc})"
        )
    workspace = (payload.get("data") or {}).get("workspaceOrError") or {}
    if workspace.get("__typename") != "Workspace":
        return LocationState(False, "WebserverUnreachable", f"the webserver has no workspace: {workspace}")
    for entry in workspace.get("locationEntries") or []:
        if entry.get("name") != location:
            continue
        result = entry.get("locationOrLoadError") or {}
        if result.get("__typename") == "PythonError":
            first = str(result.get("message", "")).strip().splitlines()[:1]
            return LocationState(
                False, "LoadError", f"code location {location} failed to load: {''.join(first)}"
            )
        repositories = result.get("repositories") or []
        if entry.get("loadStatus") != "LOADED" or result.get("__typename") != "RepositoryLocation":
            return LocationState(False, "Loading", f"the webserver is loading code location {location}")
        if not repositories:
            return LocationState(False, "Loading", f"code location {location} has no repository yet")
        if server_id and result.get("serverId") and result.get("serverId") != server_id:
            return LocationState(
                False, "Outdated", f"the webserver still serves an earlier code server for {location}"
            )
        jobs = sum(len(r.get("jobs") or []) for r in repositories)
        return LocationState(True, "Loaded", f"code location {location} loaded ({jobs} jobs)")
    return LocationState(False, "NotInWorkspace", f"the webserver's workspace has no location {location}")
