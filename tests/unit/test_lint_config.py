"""The lint configuration says what it enforces: pre-commit runs `make lint`, both packages mypy-strict."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _lint_recipe() -> list[str]:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "Makefile has no lint target"
    return [line.strip().replace("$(VENV)", ".venv") for line in recipe.group(1).splitlines()]


def test_pre_commit_runs_what_make_lint_runs() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    entries = [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]
    assert entries == _lint_recipe()


def test_make_venv_installs_pre_commit() -> None:
    """The dev extra (what `make venv` installs) has pre-commit: `.venv/bin/pre-commit install` works."""
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(re.match(r"pre-commit\b", requirement) for requirement in dev), dev


def test_both_packages_get_every_per_module_flag_of_mypy_strict() -> None:
    from mypy.main import define_options
    from mypy.options import PER_MODULE_OPTIONS

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (override,) = [o for o in pyproject["tool"]["mypy"]["overrides"] if "phlo_operator.*" in o["module"]]
    _parser, _names, strict = define_options()
    wanted = {dest: value for dest, value in strict if dest in PER_MODULE_OPTIONS}
    assert {dest: override.get(dest) for dest in wanted} == wanted
