"""requirements.lock: one lock for what ships and what is tested, never stale, a working kubernetes client."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

from tests.dockerfile_steps import REPO, parse, pip_steps
from tests.images import lock

pytestmark = pytest.mark.unit


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    lines += [
        line.split("#", 1)[0].strip()
        for line in (REPO / "operator" / "requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    return [Requirement(line) for line in lines]


def _pinned(python: str) -> dict[str, Version]:
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux"}
    out: dict[str, Version] = {}
    for name, version, marker in lock.pins():
        if not marker or Marker(marker).evaluate(env):
            assert name not in out, f"{name} pinned twice for Python {python}"
            out[name] = Version(version)
    return out


def test_lock_was_made_from_the_current_declarations():
    assert lock.recorded_hash() == lock.inputs_hash(), (
        "requirements.lock is stale: pyproject.toml's dependencies or operator/requirements.txt changed "
        "since it was made; run `make lock` and commit it"
    )


def test_stale_declarations_change_the_hash(monkeypatch):
    real = lock.declared()
    monkeypatch.setattr(lock, "declared", lambda: {**real, "dependencies": [*real["dependencies"], "x>=1"]})
    assert lock.inputs_hash() != lock.recorded_hash()


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_every_declared_requirement_is_pinned_and_satisfied(python):
    pinned = _pinned(python)
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux"}
    for requirement in _declared_requirements():
        if requirement.marker and not requirement.marker.evaluate(env):
            continue
        name = _normal(requirement.name)
        assert name in pinned, f"{requirement} has no pin in requirements.lock for Python {python}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.lock pins {name}=={pinned[name]}, which does not satisfy {requirement}"
        )


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_kubernetes_client_is_below_37_and_allowed_by_dagster_k8s(python):
    # kubernetes 37 changed ApiClient.call_api's signature, which phlo_operator/apply.py calls.
    kubernetes = _pinned(python)["kubernetes"]
    assert kubernetes < Version("37"), kubernetes
    caps = [
        Requirement(r)
        for r in importlib.metadata.requires("dagster-k8s") or []
        if _normal(Requirement(r).name) == "kubernetes"
    ]
    assert caps, "dagster-k8s no longer declares kubernetes"
    for cap in caps:
        assert cap.specifier.contains(kubernetes), f"dagster-k8s wants {cap}, the lock has {kubernetes}"


def test_the_venv_runs_the_locked_versions():
    pinned = _pinned(f"{sys.version_info.major}.{sys.version_info.minor}")
    for name in ("dagster", "dagster-k8s", "dbt-core", "kubernetes", "kopf"):
        assert Version(importlib.metadata.version(name)) == pinned[name], (
            f"{name} in the venv is not the locked one"
        )


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "operator/Dockerfile"])
def test_images_install_under_the_lock(dockerfile):
    parsed = parse(REPO / dockerfile)
    steps = pip_steps(parsed)
    assert steps and all("-c" in s and "requirements.lock" in s for s in steps if "--no-deps" not in s), steps
    assert any("requirements.lock" in copy.split() for copy in parsed.all("COPY")), "the lock is not copied"


def test_the_previous_image_installs_only_its_lock():
    """The upgrade test's starting image (tests/images/previous): every package from its own lock, pinned,
    nothing resolved during the build; then the project without its dependencies."""
    parsed = parse(REPO / "tests" / "images" / "previous" / "Dockerfile")
    steps = pip_steps(parsed)
    assert steps and all("--no-deps" in s for s in steps), steps
    assert any(s[-2:] == ["-r", "requirements.lock"] for s in steps), steps
    lock_text = (REPO / "tests" / "images" / "previous" / "requirements.lock").read_text()
    requirements = [ln for ln in lock_text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", r) for r in requirements), requirements
    assert "make lock-previous" in lock_text


def test_the_venv_installs_under_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp_rule and "$(LOCK)" in stamp_rule.group(1), "the venv stamp must depend on the lock"
    installs = re.findall(r"pip install[^\n]* -e [^\n]*", makefile)
    assert installs and all("-c $(LOCK)" in line for line in installs), installs
