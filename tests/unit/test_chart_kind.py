"""The kind end-to-end files agree with the chart, the images and the Makefile (running them needs Docker)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
import yaml
from phlo_operator.chart.values import ChartValues

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "kind" / "e2e.sh"


def test_kind_config_is_a_kind_cluster():
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [n["role"] for n in config["nodes"]] == ["control-plane"]


def test_e2e_builds_the_images_the_chart_and_example_use():
    script = E2E.read_text()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    defaults = ChartValues()
    assert f'operator_image="{defaults.image.repository}:${{version}}"' in script
    assert defaults.example_workflow.spec["image"] == f"phlo-dagster:{version}"
    assert 'runtime_image="phlo-dagster:${version}"' in script
    assert "docker build -f operator/Dockerfile" in script and "docker build -f Dockerfile" in script
    assert "kind load docker-image" in script and "--config kind-config.yaml" in script
    # The rest of the flow is the real-node suite's: one flow, cluster-specific steps at the edges.
    assert "python3 -m tests.e2e.flow" in script and script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script


def test_make_target_and_ci_workflow_run_the_script():
    assert "kind-e2e:\n\tbash tests/kind/e2e.sh" in (REPO / "Makefile").read_text()
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-e2e.yaml").read_text())
    steps = workflow["jobs"]["kind-e2e"]["steps"]
    assert any(step.get("run") == "make kind-e2e" for step in steps)
    # The project's interpreter (the Makefile picks 3.12 too).
    pythons = [
        s["with"]["python-version"]
        for s in steps
        if str(s.get("uses", "")).startswith("actions/setup-python")
    ]
    assert pythons == ["3.12"]


def test_shared_flow_is_stdlib_only():
    """The kind script runs the flow with a bare python3 (no project venv on a kind CI runner)."""
    tree = ast.parse((REPO / "tests" / "e2e" / "flow.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    stdlib = {"__future__", "argparse", "contextlib", "json", "os", "re", "shutil", "socket", "subprocess"}
    stdlib |= {"sys", "time", "urllib", "collections", "dataclasses", "pathlib", "typing"}
    assert imported <= stdlib, imported - stdlib


def test_readme_says_kind_needs_docker_and_is_not_in_make_test():
    readme = " ".join((REPO / "docs/chart.md").read_text().split())
    assert "(needs Docker; not part of `make test`)" in readme
