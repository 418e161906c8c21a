"""dbt compile through dbt-core's dbtRunner: skip on an unchanged project, recompile on change, one-line
failures, and the settings-driven entry point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phlo_dagster.dbt import HASH_FILE, DbtCompileError, compile_from_env, compile_project
from phlo_dagster.settings import Settings

pytestmark = pytest.mark.integration

QUICKSTART_DBT = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "dbt"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "dbt"
    shutil.copytree(QUICKSTART_DBT, copy, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("PHLO_DATA_DIR", str(data))
    return copy


def _compile(project: Path, target_path: Path, **kw):
    return compile_project(
        project_dir=project, profiles_dir=project, target=None, target_path=target_path, **kw
    )


def test_compile_skip_and_recompile(project, tmp_path):
    target = tmp_path / "target"
    first = _compile(project, target)
    assert not first.skipped
    manifest = json.loads(first.manifest_path.read_text())
    assert "model.quickstart.daily_revenue" in manifest["nodes"]
    assert "source.quickstart.raw.orders" in manifest["sources"]
    assert json.loads((target / HASH_FILE).read_text())["hash"] == first.spec_hash
    stamp = first.manifest_path.stat().st_mtime_ns

    second = _compile(project, target)
    assert second.skipped and second.spec_hash == first.spec_hash
    assert first.manifest_path.stat().st_mtime_ns == stamp

    (project / "models" / "marts" / "big_orders.sql").write_text(
        "select * from {{ ref('stg_orders') }} where amount > 50\n"
    )
    third = _compile(project, target)
    assert not third.skipped and third.spec_hash != first.spec_hash
    assert "model.quickstart.big_orders" in json.loads(third.manifest_path.read_text())["nodes"]

    forced = _compile(project, target, force=True)
    assert not forced.skipped and forced.spec_hash == third.spec_hash


def test_compile_failure_names_the_cause_and_is_not_recorded(project, tmp_path):
    target = tmp_path / "target"
    good = _compile(project, target)
    (project / "models" / "marts" / "broken.sql").write_text("select {{ ref('does_not_exist') }}\n")
    with pytest.raises(DbtCompileError) as info:
        _compile(project, target)
    message = str(info.value)
    assert message.splitlines()[0] == f"dbt compile of {project.resolve()} failed:"
    assert "broken" in message and "does_not_exist" in message and "Traceback" not in message
    # The last success stays recorded, so the broken project is compiled again (not skipped) next time.
    assert json.loads((target / HASH_FILE).read_text())["hash"] == good.spec_hash
    with pytest.raises(DbtCompileError):
        _compile(project, target)


def test_compile_from_env_reads_settings(project, tmp_path, monkeypatch):
    target = tmp_path / "env-target"
    monkeypatch.setenv("PHLO_DBT_PROJECT_DIR", str(project))
    monkeypatch.setenv("PHLO_DBT_TARGET_PATH", str(target))
    monkeypatch.setenv("PHLO_DBT_TARGET", "dev")
    monkeypatch.delenv("PHLO_DBT_PROFILES_DIR", raising=False)
    result = compile_from_env()
    assert result.manifest_path == target / "manifest.json" and not result.skipped
    assert compile_from_env(Settings()).skipped
