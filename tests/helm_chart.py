"""Runs the real helm binary of the test bed against charts/phlo-dagster and parses what it renders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.testbed.cluster import BIN_DIR

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "phlo-dagster"
RELEASE = "phlo-dagster"

# Every optional object switched on, so one render covers every template.
ALL_FEATURES: dict[str, Any] = {
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "exampleWorkflow": {"enabled": True},
    "tests": {"enabled": True},
}


def helm_binary() -> Path:
    helm = BIN_DIR / "helm"
    assert helm.exists(), f"{helm} is missing: run `make testbed-binaries`"
    return helm


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """helm without any cluster (template, lint); HOME-independent caches under .testbed/helm."""
    cache = REPO / ".testbed" / "helm"
    env = {
        "HELM_CACHE_HOME": str(cache / "cache"),
        "HELM_CONFIG_HOME": str(cache / "config"),
        "HELM_DATA_HOME": str(cache / "data"),
        "PATH": "/usr/bin:/bin",
        "KUBECONFIG": "/dev/null",
    }
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def values_file(tmp: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp / name
    path.write_text(json.dumps(values))
    return path


def template(
    tmp: Path,
    values: dict[str, Any] | None = None,
    namespace: str = "phlo",
    release: str = RELEASE,
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`helm template` (CRDs from crds/ included, hooks included) parsed into objects."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--include-crds", *extra]
    if values:
        args += ["-f", str(values_file(tmp, values, f"values-{len(list(tmp.iterdir()))}.yaml"))]
    out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})
