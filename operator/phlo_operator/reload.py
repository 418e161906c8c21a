"""Ask the Dagster webserver to reload the code location after a code-server rollout (dagster#12376)."""

from __future__ import annotations

import json
import os
import urllib.request

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


def reload_location(base_url: str, location: str, timeout: float = 5.0) -> str:
    """POST the reloadRepositoryLocation mutation; returns the result's __typename."""
    body = json.dumps({"query": MUTATION, "variables": {"name": location}}).encode()
    req = urllib.request.Request(
        base_url.rstrip("/") + "/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise ReloadFailed(f"{base_url}: {exc}") from None
    result = (payload.get("data") or {}).get("reloadRepositoryLocation") or {}
    typename = str(result.get("__typename", ""))
    if payload.get("errors") or typename != "WorkspaceLocationEntry":
        raise ReloadFailed(f"{base_url}: {payload.get('errors') or result}")
    return typename
