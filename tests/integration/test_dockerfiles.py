"""Each image's pip steps replayed in a fresh venv: what the image's command imports must import there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.dockerfile_steps import REPO, parse, replay

pytestmark = pytest.mark.integration

CACHE = REPO / ".testbed" / "dockerfile-venvs"


def _python(env: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd="/", timeout=300
    )


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return tmp_path_factory.mktemp("dockerfiles") / "pip.log"


@pytest.mark.timeout(900)
def test_operator_image_has_the_operator_and_no_dagster(log_file):
    env = replay(parse(REPO / "operator" / "Dockerfile"), CACHE, log_file)
    ok = _python(env, "import phlo_operator.main, kopf, kubernetes")
    assert ok.returncode == 0, ok.stderr + log_file.read_text()[-3000:]
    assert (env / "bin" / "phlo-dagster-operator").exists(), "console script missing"
    help_ = subprocess.run(
        [str(env / "bin" / "phlo-dagster-operator"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_.returncode == 0, help_.stderr
    for flag in ("--namespace", "--all-namespaces", "--metrics-port", "--health-port"):
        assert flag in help_.stdout
    for module in ("dagster", "dbt", "dagster_k8s"):
        absent = _python(env, f"import {module}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, f"{module} is in the image"


@pytest.mark.timeout(1800)
def test_runtime_image_loads_the_definitions_module(log_file):
    env = replay(parse(REPO / "Dockerfile"), CACHE, log_file)
    ok = _python(env, "import phlo_dagster.definitions, dagster_k8s, dagster_postgres, dagster_dbt, dbt")
    assert ok.returncode == 0, ok.stderr[-3000:] + log_file.read_text()[-3000:]
    for script in ("dagster", "dagster-daemon", "phlo"):
        assert (env / "bin" / script).exists(), f"{script} missing from the runtime image"
