"""dbt project hash: what changes it and what does not (the compile itself is an integration test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phlo_dagster.dbt import DbtCompileError, compile_project, project_hash

pytestmark = pytest.mark.unit


def _project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (root / "profiles.yml").write_text("p: {}\n")
    (root / "models" / "m.sql").write_text("select 1\n")
    return root


def _hash(root: Path, target: str | None = None) -> str:
    return project_hash(project_dir=root, profiles_dir=root, target=target, target_path=root / "target")


def test_hash_changes_with_sql_yml_profiles_and_target(tmp_path):
    root = _project(tmp_path / "p")
    base = _hash(root)
    assert _hash(root) == base
    (root / "models" / "m.sql").write_text("select 2\n")
    after_sql = _hash(root)
    assert after_sql != base
    (root / "models" / "schema.yml").write_text("version: 2\n")
    after_yml = _hash(root)
    assert after_yml != after_sql
    (root / "profiles.yml").write_text("p: {target: x}\n")
    after_profiles = _hash(root)
    assert after_profiles != after_yml
    assert _hash(root, target="prod") != after_profiles


def test_hash_ignores_target_logs_and_hidden_files(tmp_path):
    root = _project(tmp_path / "p")
    base = _hash(root)
    for rel in ("target/manifest.json", "target/x.sql", "logs/dbt.log", ".user.yml", "dbt_packages/a/b.sql"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("noise")
    assert _hash(root) == base


def test_missing_project_is_a_one_line_error(tmp_path):
    with pytest.raises(DbtCompileError) as info:
        compile_project(project_dir=tmp_path, profiles_dir=tmp_path, target=None, target_path=tmp_path / "t")
    assert "no dbt_project.yml" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_profiles_is_a_one_line_error(tmp_path):
    root = _project(tmp_path / "p")
    with pytest.raises(DbtCompileError, match=r"PHLO_DBT_PROFILES_DIR=.*no profiles.yml"):
        compile_project(project_dir=root, profiles_dir=tmp_path, target=None, target_path=tmp_path / "t")
