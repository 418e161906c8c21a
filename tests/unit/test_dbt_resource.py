"""The dbt resource a run uses skips the two start-up costs dagster-dbt pays before every dbt command."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from phlo_dagster.dbt import _cli_resource_class

pytestmark = pytest.mark.unit


def test_no_dbt_version_subprocess_and_no_in_process_adapter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Mutation (2026-12-06): with dagster-dbt's own DbtCliResource (no override) check_output was called and
    the adapter initialisation tried to load a dbt project from tmp_path."""
    import dagster_dbt.core.resource as resource_module

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"dbt --version run in a subprocess: {args}")

    monkeypatch.setattr(resource_module, "check_output", refuse)
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    dbt = _cli_resource_class()(
        project_dir=str(tmp_path), dbt_executable=str(Path(sys.executable).parent / "dbt")
    )
    assert str(dbt._cli_version) == version("dbt-core")
    assert dbt._initialize_dbt_core_adapter(["build"]) is None


def test_another_dbt_is_asked_its_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A dbt other than the one beside this interpreter may be another dbt-core (or dbt Fusion): asked."""
    import dagster_dbt.core.resource as resource_module

    monkeypatch.setattr(resource_module, "check_output", lambda argv: b"Core:\n  - installed: 2.0.1\n")
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    other = tmp_path / "other-dbt"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    dbt = _cli_resource_class()(project_dir=str(tmp_path), dbt_executable=str(other))
    assert str(dbt._cli_version) == "2.0.1"
