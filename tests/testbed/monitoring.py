"""The Prometheus Operator's own ServiceMonitor CRD for the bed, fetched from its Go module (not kept here).

`go mod download -json MODULE@VERSION` puts the module in the Go module cache (GOMODCACHE) on first use and
answers from there afterwards (about half a second), so the CRD is the upstream one, pinned by VERSION and
checked against go.sum's checksum database like every other module the bed builds from.
`python -m tests.testbed.monitoring` prints the CRD's path (and fetches it when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.testbed.processes import TestbedError

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.85.0"
SERVICEMONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
SERVICEMONITOR_CRD_NAME = "servicemonitors.monitoring.coreos.com"


def module_dir(module: str = MODULE, version: str = VERSION) -> Path:
    """The module's extracted tree in the Go module cache, downloaded when missing."""
    go = shutil.which("go")
    if go is None:
        raise TestbedError(f"'go' is not on PATH: it fetches {module}@{version} (the ServiceMonitor CRD)")
    # Outside any module, so the repository's go.mod files play no part; GOFLAGS cleared of -mod settings.
    env = {**os.environ, "GOFLAGS": "", "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    if result.returncode != 0 or not info.get("Dir"):
        detail = info.get("Error") or result.stderr.strip() or result.stdout.strip()
        raise TestbedError(f"go mod download {module}@{version} failed: {detail}")
    return Path(info["Dir"])


def servicemonitor_crd_path() -> Path:
    path = module_dir() / SERVICEMONITOR_CRD
    if not path.is_file():
        raise TestbedError(f"{MODULE}@{VERSION} has no {SERVICEMONITOR_CRD}")
    return path


def servicemonitor_crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(servicemonitor_crd_path().read_text())
    if doc.get("metadata", {}).get("name") != SERVICEMONITOR_CRD_NAME:
        raise TestbedError(f"{SERVICEMONITOR_CRD} of {MODULE}@{VERSION} is not the ServiceMonitor CRD")
    return doc


if __name__ == "__main__":
    try:
        print(servicemonitor_crd_path())
    except TestbedError as error:
        print(f"monitoring: error: {error}", file=sys.stderr)
        sys.exit(1)
