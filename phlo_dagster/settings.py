"""Runtime settings from the environment (the names in phlo_dagster.constants), validated once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phlo_dagster import constants as c

__all__ = ["Settings", "SettingsError", "load_settings"]


class SettingsError(ValueError):
    """An environment variable holds a value the runtime cannot use; the message names it."""


class Settings(BaseSettings):
    """What the code server, webserver and CLI read from the environment (README: Runtime configuration)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    dagster_port: int = Field(c.DEFAULT_WEBSERVER_PORT, validation_alias=c.ENV_DAGSTER_PORT, ge=1, le=65535)
    dagster_home: Path | None = Field(None, validation_alias=c.ENV_DAGSTER_HOME)
    workflows_path: Path = Field(Path(c.DEFAULT_WORKFLOWS_PATH), validation_alias=c.ENV_WORKFLOWS_PATH)
    code_location_name: str = Field(c.DEFAULT_CODE_LOCATION_NAME, validation_alias=c.ENV_CODE_LOCATION_NAME)
    plugins_enabled: bool = Field(True, validation_alias=c.ENV_PLUGINS_ENABLED)
    dbt_enabled: bool = Field(False, validation_alias=c.ENV_DBT_ENABLED)
    dbt_project_dir: Path = Field(Path("dbt"), validation_alias=c.ENV_DBT_PROJECT_DIR)
    dbt_profiles_dir: Path | None = Field(None, validation_alias=c.ENV_DBT_PROFILES_DIR)
    dbt_target: str | None = Field(None, validation_alias=c.ENV_DBT_TARGET)
    dbt_target_path: Path | None = Field(None, validation_alias=c.ENV_DBT_TARGET_PATH)
    dbt_compile_on_load: bool = Field(True, validation_alias=c.ENV_DBT_COMPILE_ON_LOAD)
    data_dir: Path | None = Field(None, validation_alias=c.ENV_DATA_DIR)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def ensure_data_dir(self) -> Path | None:
        """Create PHLO_DATA_DIR when set and missing, and pin it absolute in the environment.

        Workflows and dbt profiles keep files there (dbt-duckdb opens its file even to compile); dbt and
        run workers may start in other directories, so a relative value would point elsewhere for them.
        """
        if self.data_dir is None:
            return None
        path = self.data_dir.expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"{c.ENV_DATA_DIR}={str(self.data_dir)!r}: cannot create {path}: {exc.strerror or exc}"
            ) from None
        os.environ[c.ENV_DATA_DIR] = str(path)
        return path

    @property
    def workflows_path_explicit(self) -> bool:
        """True when WORKFLOWS_PATH was set, so a missing directory is an error rather than 'no workflows'."""
        return "workflows_path" in self.model_fields_set

    @property
    def resolved_dbt_profiles_dir(self) -> Path:
        """PHLO_DBT_PROFILES_DIR, else the dbt project directory (where the example keeps profiles.yml)."""
        return (self.dbt_profiles_dir or self.dbt_project_dir).resolve()

    @property
    def resolved_dbt_target_path(self) -> Path:
        """PHLO_DBT_TARGET_PATH, else <project>/target; absolute, as dbt reads relative paths per project."""
        return (self.dbt_target_path or self.dbt_project_dir / "target").resolve()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (plus overrides); a bad value raises SettingsError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            info = Settings.model_fields.get(field)
            name = (
                info.validation_alias
                if info is not None and isinstance(info.validation_alias, str)
                else field
            )
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("invalid runtime setting: " + "; ".join(problems)) from None
