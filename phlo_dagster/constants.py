"""Plain names shared by the runtime and the operator; importing this module imports nothing else."""

from __future__ import annotations

# Ports (the operator's CRD defaults and the runtime's defaults agree through these).
DEFAULT_WEBSERVER_PORT = 3000
DEFAULT_CODE_SERVER_PORT = 4000
METRICS_PATH = "/metrics"

# Environment variables read by the runtime and set by the operator.
ENV_DAGSTER_HOME = "DAGSTER_HOME"
ENV_DAGSTER_PORT = "DAGSTER_PORT"
ENV_WORKFLOWS_PATH = "WORKFLOWS_PATH"
ENV_CODE_LOCATION_NAME = "PHLO_CODE_LOCATION_NAME"
ENV_DBT_ENABLED = "PHLO_DBT_ENABLED"
ENV_DBT_PROJECT_DIR = "PHLO_DBT_PROJECT_DIR"
ENV_DBT_PROFILES_DIR = "PHLO_DBT_PROFILES_DIR"
ENV_DBT_TARGET = "PHLO_DBT_TARGET"
ENV_DBT_TARGET_PATH = "PHLO_DBT_TARGET_PATH"  # where compiled artifacts (manifest.json) are written/read
ENV_DBT_COMPILE_ON_LOAD = "PHLO_DBT_COMPILE_ON_LOAD"  # compile at definitions load when no manifest exists
ENV_PLUGINS_ENABLED = "PHLO_PLUGINS_ENABLED"  # load phlo.plugins.* entry points (assets, resources)
ENV_DEBUG = "PHLO_DEBUG"  # `phlo --debug`: failures show their traceback
ENV_DATA_DIR = "PHLO_DATA_DIR"  # local data files (e.g. a DuckDB file); created when missing
ENV_PG_HOST = "DAGSTER_PG_HOST"
ENV_PG_PORT = "DAGSTER_PG_PORT"
ENV_PG_USER = "DAGSTER_PG_USER"
ENV_PG_PASSWORD = "DAGSTER_PG_PASSWORD"
ENV_PG_DB = "DAGSTER_PG_DB"

DEFAULT_WORKFLOWS_PATH = "workflows"
DEFAULT_IMAGE_WORKFLOWS_PATH = "/app/workflows"
DEFAULT_CODE_LOCATION_NAME = "phlo"
DEFINITIONS_MODULE = "phlo_dagster.definitions"
# Definitions metadata key carrying the build time (seconds); the webserver's /metrics publishes it.
DEFINITIONS_BUILD_SECONDS_METADATA_KEY = "phlo/definitions_build_seconds"

# Labels on every child the operator renders.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "phlo-dagster"
