"""Settings from the environment: names from phlo_dagster.constants, defaults, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phlo_dagster import constants as c
from phlo_dagster.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (
        c.ENV_DAGSTER_PORT,
        c.ENV_WORKFLOWS_PATH,
        c.ENV_DBT_ENABLED,
        c.ENV_DBT_PROJECT_DIR,
        c.ENV_DBT_PROFILES_DIR,
        c.ENV_DBT_TARGET,
        c.ENV_DBT_TARGET_PATH,
        c.ENV_PLUGINS_ENABLED,
        c.ENV_CODE_LOCATION_NAME,
        c.ENV_DATA_DIR,
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    s = load_settings()
    assert s.dagster_port == c.DEFAULT_WEBSERVER_PORT == 3000
    assert s.workflows_path == Path("workflows") and not s.workflows_path_explicit
    assert s.dbt_enabled is False and s.plugins_enabled is True
    assert s.resolved_dbt_profiles_dir == Path("dbt").resolve()
    assert s.resolved_dbt_target_path == Path("dbt/target").resolve()


def test_environment_names(monkeypatch, tmp_path):
    monkeypatch.setenv(c.ENV_DAGSTER_PORT, "3100")
    monkeypatch.setenv(c.ENV_WORKFLOWS_PATH, str(tmp_path))
    monkeypatch.setenv(c.ENV_DBT_ENABLED, "true")
    monkeypatch.setenv(c.ENV_DBT_PROJECT_DIR, str(tmp_path / "proj"))
    monkeypatch.setenv(c.ENV_DBT_PROFILES_DIR, str(tmp_path / "profiles"))
    monkeypatch.setenv(c.ENV_DBT_TARGET, "prod")
    monkeypatch.setenv(c.ENV_DBT_TARGET_PATH, str(tmp_path / "out"))
    monkeypatch.setenv(c.ENV_PLUGINS_ENABLED, "false")
    s = load_settings()
    assert s.dagster_port == 3100
    assert s.workflows_path == tmp_path and s.workflows_path_explicit
    assert s.dbt_enabled and s.dbt_target == "prod" and not s.plugins_enabled
    assert s.resolved_dbt_profiles_dir == tmp_path / "profiles"
    assert s.resolved_dbt_target_path == tmp_path / "out"


@pytest.mark.parametrize(
    ("name", "value"),
    [(c.ENV_DAGSTER_PORT, "http"), (c.ENV_DAGSTER_PORT, "70000"), (c.ENV_DBT_ENABLED, "maybe")],
)
def test_bad_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert f"{name}={value!r}" in str(info.value)
    assert "\n" not in str(info.value)


def test_data_dir_is_created_and_pinned_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(c.ENV_DATA_DIR, "nested/data")
    path = load_settings().ensure_data_dir()
    assert path == tmp_path / "nested" / "data" and path.is_dir()
    assert os.environ[c.ENV_DATA_DIR] == str(path)  # dbt and run workers in other directories agree

    monkeypatch.setenv(c.ENV_DATA_DIR, "")
    assert load_settings().ensure_data_dir() is None


def test_data_dir_that_cannot_be_created_is_named(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv(c.ENV_DATA_DIR, str(tmp_path / "file" / "data"))
    with pytest.raises(SettingsError) as info:
        load_settings().ensure_data_dir()
    assert str(info.value).startswith(f"{c.ENV_DATA_DIR}={str(tmp_path / 'file' / 'data')!r}: cannot create")
    assert "\n" not in str(info.value)
