"""Each image's pip steps replayed in a fresh venv: what the image's command imports must import there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.dockerfile_steps import REPO, parse, replay

pytestmark = pytest.mark.integration

# Outside the checkout, so a fresh clone on this machine reuses the venvs (keyed by their dependencies).
CACHE = Path(
    os.environ.get("PHLO_DOCKERFILE_VENV_CACHE")
    or Path.home() / ".cache" / "phlo-dagster" / "dockerfile-venvs"
)


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return tmp_path_factory.mktemp("dockerfiles") / "pip.log"


@pytest.mark.timeout(900)
def test_operator_image_has_the_operator_and_no_dagster(log_file):
    image = replay(parse(REPO / "operator" / "Dockerfile"), CACHE, log_file)
    ok = image.python("import phlo_operator.main, kopf, kubernetes")
    assert ok.returncode == 0, ok.stderr + log_file.read_text()[-3000:]
    entrypoint = image.venv / "bin" / "phlo-dagster-operator"
    help_ = subprocess.run([str(entrypoint), "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0, help_.stderr
    for flag in ("--namespace", "--all-namespaces", "--metrics-port", "--health-port", "--log-level"):
        assert flag in help_.stdout
    for module in ("dagster", "dbt", "dagster_k8s"):
        absent = image.python(f"import {module}")
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, f"{module} is in the image"


@pytest.mark.timeout(1800)
def test_runtime_image_loads_the_definitions_with_dbt(log_file, tmp_path):
    image = replay(parse(REPO / "Dockerfile"), CACHE, log_file)
    assert image.env["WORKFLOWS_PATH"] == str(image.root / "app" / "workflows")
    for script in ("dagster", "dagster-daemon", "phlo"):
        assert (image.venv / "bin" / script).exists(), f"{script} missing from the runtime image"
    # What `dagster api grpc -m phlo_dagster.definitions` imports, with the dbt project baked at /app/dbt.
    loaded = image.python(
        "import dagster_k8s, dagster_postgres\n"
        "from phlo_dagster.definitions import defs\n"
        "print(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys()))",
        {
            "PHLO_DBT_ENABLED": "true",
            "PHLO_DBT_PROFILES_DIR": image.env["PHLO_DBT_PROJECT_DIR"],
            "PHLO_DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
            "DAGSTER_HOME": str(tmp_path),
            "PHLO_DATA_DIR": str(tmp_path / "data"),
        },
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:] + log_file.read_text()[-2000:]
    keys = loaded.stdout.strip()
    assert keys.startswith("[") and keys != "[]", keys
    assert (tmp_path / "dbt-target" / "manifest.json").exists(), "dbt did not compile inside the image"
