"""The images' Dockerfiles: non-root, the right entry points, and an operator image without Dagster."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.dockerfile_steps import REPO, parse, pip_steps

pytestmark = pytest.mark.unit

OPERATOR = REPO / "operator" / "Dockerfile"
RUNTIME = REPO / "Dockerfile"


def _requirement_names(lines: list[str]) -> dict[str, str]:
    """name -> full requirement, names normalised as pip does."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            out[re.sub(r"[-_.]+", "-", name).lower()] = line.replace(" ", "")
    return out


@pytest.mark.parametrize("path", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_image_runs_as_numeric_non_root_user(path):
    user = parse(path).last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        f"{path}: USER {user!r} must be a numeric non-root uid (runAsNonRoot)"
    )
    assert int(uid) == 10001, "the chart's podSecurityContext runs as 10001"


def test_operator_image_installs_the_distribution_without_dependencies():
    steps = pip_steps(parse(OPERATOR))
    project = [s for s in steps if "." in s]
    assert project and "--no-deps" in project[0], f"phlo-dagster must be installed with --no-deps: {steps}"
    assert any("-r" in s and "requirements.txt" in s for s in steps)
    assert any("operator/requirements.txt" in c for c in parse(OPERATOR).all("COPY"))


@pytest.mark.parametrize("path", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_dependencies_install_before_the_code_is_copied(path):
    """The dependency layer depends on the lock and the package metadata only, so a code change (or another
    workflow image) reuses it and rebuilds the top layers alone."""
    dockerfile = parse(path)
    first_install = next(
        i
        for i, step in enumerate(dockerfile.instructions)
        if step.keyword == "RUN" and "pip install" in step.args
    )
    copied_before = " ".join(
        step.args for step in dockerfile.instructions[:first_install] if step.keyword == "COPY"
    )
    assert "requirements.lock" in copied_before
    assert "phlo_dagster/" not in copied_before and "README.md" not in copied_before, copied_before


def test_operator_requirements_equal_the_operator_extra():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = _requirement_names(pyproject["project"]["optional-dependencies"]["operator"])
    required = _requirement_names((REPO / "operator" / "requirements.txt").read_text().splitlines())
    assert required == extra
    assert not any(name.startswith(("dagster", "dbt")) for name in required)


def test_operator_entrypoint_is_the_console_script():
    assert json.loads(parse(OPERATOR).last("ENTRYPOINT")) == ["phlo-dagster-operator"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["phlo-dagster-operator"] == "phlo_operator.main:main"


def test_runtime_image_installs_the_dbt_and_s3_extras_and_bakes_workflows():
    dockerfile = parse(RUNTIME)
    steps = pip_steps(dockerfile)
    assert any(".[dbt,s3]" in s for s in steps), steps  # s3: dagster-aws, for spec.computeLogs.s3
    copies = dockerfile.all("COPY")
    assert any(c.endswith(" /app/workflows/") for c in copies), copies
    assert any(c.endswith(" /app/dbt/") for c in copies), copies
    env = " ".join(dockerfile.all("ENV"))
    assert "WORKFLOWS_PATH=/app/workflows" in env
    assert json.loads(dockerfile.last("CMD"))[:3] == ["dagster", "api", "grpc"]


def test_build_args_point_at_existing_directories():
    for name, default in parse(RUNTIME).build_args().items():
        assert (REPO / default).is_dir(), (
            f"ARG {name} default {default!r} is not a directory of the repository"
        )


@pytest.mark.parametrize("path", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_images_build_from_python_3_12_slim(path):
    assert parse(path).all("FROM") == ["python:3.12-slim"]


def test_image_cache_key_covers_what_the_dockerfile_copies():
    from tests.images import build

    files = {str(p.relative_to(REPO)) for p in build.context_files(RUNTIME, {})}
    assert {"pyproject.toml", "README.md", "requirements.lock"} <= files
    for directory in ("phlo_dagster/", "operator/phlo_operator/", "examples/quickstart/workflows/"):
        assert any(f.startswith(directory) for f in files), directory
    assert not any("__pycache__" in f or f.endswith(".duckdb") for f in files)
    other = build.context_files(RUNTIME, {"WORKFLOWS_DIR": "tests/images"})
    baked = {str(p.relative_to(REPO)) for p in other}
    assert "tests/images/build.py" in baked
    assert not any(f.startswith("examples/quickstart/workflows/") for f in baked)


def test_image_names_are_the_references_the_kubelet_asks_for():
    from tests.images import build

    assert build.normalize("python:3.12-slim") == "docker.io/library/python:3.12-slim"
    assert build.normalize("postgres:17-alpine") == build.POSTGRES_IMAGE
    assert build.normalize("acme/flows") == "docker.io/acme/flows:latest"
    assert build.normalize("registry.k8s.io/pause:3.10.1") == "registry.k8s.io/pause:3.10.1"
    assert build.normalize("localhost:5000/x:1") == "localhost:5000/x:1"
