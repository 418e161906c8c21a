"""The one client of the Dagster webserver's GraphQL API: `phlo dev` (its dbt hook and its watch on the code
location) and the operator both use it.

Standard library only, like constants.py: the operator imports this module without Dagster (its image installs
this distribution with --no-deps). Every failure, unreachable webserver or refused mutation alike, is one
:class:`ReloadFailed` whose message says which.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from phlo_dagster.text import one_line

__all__ = [
    "LOCATION_QUERY",
    "RELOAD_MUTATION",
    "LocationState",
    "ReloadFailed",
    "location_state",
    "parse_location_state",
    "post",
    "reload_location",
]

RELOAD_MUTATION = (
    "mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {"
    " __typename ... on WorkspaceLocationEntry { name } ... on PythonError { message } } }"
)
LOCATION_QUERY = (
    "query { workspaceOrError { __typename ... on PythonError { message }"
    " ... on Workspace { locationEntries { name loadStatus"
    " locationOrLoadError { __typename ... on PythonError { message causes { message } } } } } } }"
)
# What the mutation returns when the webserver took the request (a load error then shows in the workspace).
RELOADED = "WorkspaceLocationEntry"


class ReloadFailed(Exception):
    """The webserver could not be asked to reload the code location, or refused (the message says which)."""


def post(base_url: str, query: str, variables: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST one GraphQL document to <base_url>/graphql; the decoded payload ({} when it is not an object).

    Raises OSError (unreachable, HTTP error, timeout) or ValueError (an answer that is not JSON).
    """
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        payload = json.loads(resp.read() or b"{}")
    return payload if isinstance(payload, dict) else {}


def reload_location(base_url: str, location: str, timeout: float = 5.0) -> str:
    """Ask the webserver at base_url to reload one code location; returns the result's __typename.

    Raises ReloadFailed when the webserver does not answer, answers with GraphQL errors, or returns anything
    but a WorkspaceLocationEntry (PythonError, RepositoryLocationNotFound, ReloadNotSupported, ...).
    """
    try:
        payload = post(base_url, RELOAD_MUTATION, {"name": location}, timeout)
    except (OSError, ValueError) as exc:
        raise ReloadFailed(f"reload of code location {location} at {base_url} failed: {exc}") from None
    result = (payload.get("data") or {}).get("reloadRepositoryLocation") or {}
    typename = str(result.get("__typename", ""))
    if payload.get("errors") or typename != RELOADED:
        refusal = one_line(str(payload.get("errors") or result.get("message") or result), 300)
        raise ReloadFailed(f"reload of code location {location} at {base_url} was refused: {refusal}")
    return typename


@dataclass(frozen=True)
class LocationState:
    """One code location as the webserver sees it: loaded, loading, failed (with its error), missing or
    unreachable (the webserver did not answer; ``error`` says why)."""

    status: str
    error: str = ""


def parse_location_state(payload: dict[str, Any], location: str) -> LocationState:
    """The state of one location from a LOCATION_QUERY answer (pure; the error keeps its causes' lines)."""
    workspace = (payload.get("data") or {}).get("workspaceOrError") or {}
    if payload.get("errors") or workspace.get("__typename") == "PythonError":
        return LocationState("unreachable", str(payload.get("errors") or workspace.get("message")))
    entries = [e for e in workspace.get("locationEntries") or [] if e.get("name") == location]
    if not entries:
        return LocationState("missing")
    entry = entries[0]
    loaded = entry.get("locationOrLoadError") or {}
    if loaded.get("__typename") == "PythonError":
        causes = [str(c.get("message", "")) for c in loaded.get("causes") or []]
        return LocationState("failed", "\n".join([str(loaded.get("message", "")), *causes]).strip())
    if entry.get("loadStatus") == "LOADING" or not loaded:
        return LocationState("loading")
    return LocationState("loaded")


def location_state(base_url: str, location: str, timeout: float = 5.0) -> LocationState:
    """Ask the webserver at base_url how one code location stands; never raises."""
    try:
        payload = post(base_url, LOCATION_QUERY, {}, timeout)
    except (OSError, ValueError) as exc:
        return LocationState("unreachable", str(exc))
    return parse_location_state(payload, location)
