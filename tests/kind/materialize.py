"""Materialize one asset through a Dagster webserver's GraphQL API and wait for the run (kind e2e; stdlib).

Usage: python3 tests/kind/materialize.py http://127.0.0.1:13000 [asset/key/path]
Without an asset key it picks the first materializable asset with no upstream dependencies (unpartitioned
first); a partitioned asset is materialized for its last partition key.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

REPOSITORIES = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        assetNodes {
          assetKey { path } isMaterializable isPartitioned partitionKeys dependencyKeys { path }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN = """
query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""
MATERIALIZATIONS = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) { ... on Asset { assetMaterializations(limit: 1) { runId } } }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"materialize: {message}\n")
    raise SystemExit(1)


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        payload: dict[str, Any] = json.load(response)
    if payload.get("errors"):
        fail(f"GraphQL errors: {payload['errors']}")
    data: dict[str, Any] = payload["data"]
    return data


def wait_for_server(base: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                fail(f"webserver at {base} did not answer /server_info: {exc}")
            time.sleep(2)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        fail("usage: materialize.py BASE_URL [asset/key/path]")
    base, wanted = argv[1].rstrip("/"), argv[2].split("/") if len(argv) > 2 else None
    wait_for_server(base)
    repos = graphql(base, REPOSITORIES)["repositoriesOrError"]
    if repos["__typename"] != "RepositoryConnection":
        fail(f"cannot list repositories: {repos}")
    candidates = [
        (node["isPartitioned"], repo["location"]["name"], repo["name"], node)
        for repo in repos["nodes"]
        for node in repo["assetNodes"]
        if (wanted and node["assetKey"]["path"] == wanted)
        or (not wanted and node["isMaterializable"] and not node["dependencyKeys"])
    ]
    if not candidates:
        fail(f"no asset {'/'.join(wanted) if wanted else 'without dependencies'} in {base}")
    _, location, repository, node = sorted(candidates, key=lambda c: c[0])[0]
    key = node["assetKey"]["path"]
    tags = []
    if node["isPartitioned"]:
        if not node["partitionKeys"]:
            fail(f"{'/'.join(key)} is partitioned but has no partition keys")
        tags = [{"key": "dagster/partition", "value": node["partitionKeys"][-1]}]
    print(f"materializing {'/'.join(key)} {tags} from {location}/{repository}", flush=True)
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": repository,
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": key}],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": tags},
    }
    launched = graphql(base, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        fail(f"launchRun failed: {launched}")
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 900
    status = "QUEUED"
    while status not in FINISHED:
        if time.monotonic() > deadline:
            fail(f"run {run_id} still {status} after 15 minutes")
        time.sleep(5)
        status = graphql(base, RUN, {"runId": run_id})["runOrError"].get("status", "UNKNOWN")
        print(f"run {run_id}: {status}", flush=True)
    if status != "SUCCESS":
        fail(f"run {run_id} ended {status}")
    asset = graphql(base, MATERIALIZATIONS, {"key": {"path": key}})["assetOrError"]
    if not asset.get("assetMaterializations") or asset["assetMaterializations"][0]["runId"] != run_id:
        fail(f"run {run_id} succeeded but {'/'.join(key)} has no materialization from it: {asset}")
    print(f"materialized {'/'.join(key)} in run {run_id}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
