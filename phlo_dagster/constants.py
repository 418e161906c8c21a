"""Plain names shared by the runtime and the operator; importing this module imports nothing else."""

from __future__ import annotations

# Ports (the operator's CRD defaults and the runtime's defaults agree through these).
DEFAULT_WEBSERVER_PORT = 3000
DEFAULT_CODE_SERVER_PORT = 4000
# `phlo daemon`'s health endpoint (the daemon's Kubernetes probes)
DAEMON_HEALTH_PORT = 8081
DAEMON_HEALTH_PATH = "/healthz"
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
# how long every Dagster process phlo_dagster runs retries a PostgreSQL connection (postgres_retry.py)
ENV_POSTGRES_RETRY_SECONDS = "PHLO_POSTGRES_RETRY_SECONDS"
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

# The webserver's /metrics families, as queried (counters with `_total`): (name, type, labels, meaning). The
# collector builds its families from this list; the dashboard, the alerts and the docs table check against it.
DAGSTER_METRIC_FAMILIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("dagster_runs", "gauge", ("status", "job"), "Runs in storage by status and job."),
    (
        "dagster_runs_finished_total",
        "counter",
        ("status", "job"),
        "Runs seen reaching a finished status (SUCCESS, FAILURE, CANCELED).",
    ),
    (
        "dagster_run_duration_seconds",
        "histogram",
        ("job", "status"),
        "Wall-clock duration of finished runs, start to end (buckets 1 s to 1 day).",
    ),
    ("dagster_runs_queued", "gauge", (), "Runs waiting in the run queue."),
    ("dagster_runs_in_progress", "gauge", (), "Runs started and not finished."),
    (
        "dagster_runs_queued_oldest_age_seconds",
        "gauge",
        (),
        "Seconds since the oldest queued run was created; 0 when the queue is empty.",
    ),
    (
        "dagster_step_duration_seconds",
        "histogram",
        ("job", "step", "status"),
        "Duration of finished steps (SUCCESS or FAILURE), from their start event to their end event.",
    ),
    ("dagster_asset_materializations_total", "counter", ("asset_key",), "Asset materializations recorded."),
    (
        "dagster_asset_last_materialization_timestamp_seconds",
        "gauge",
        ("asset_key",),
        "Unix time of the asset's latest materialization.",
    ),
    (
        "dagster_asset_freshness_state",
        "gauge",
        ("asset_key", "state"),
        "1 for the asset's current freshness state (pass, warn, fail, unknown), 0 for the others; "
        "assets with "
        "a freshness policy only.",
    ),
    (
        "dagster_asset_check_evaluations_total",
        "counter",
        ("asset_key", "check_name", "outcome", "severity", "blocking"),
        "Asset check evaluations recorded, by outcome (passed, failed), severity (warn, error) and whether "
        "the check blocks downstream assets (true, false).",
    ),
    (
        "dagster_instigator_ticks_total",
        "counter",
        ("type", "name", "status"),
        "Finished ticks of schedules and sensors (type schedule or sensor) by status (SUCCESS, SKIPPED, "
        "FAILURE).",
    ),
    (
        "dagster_instigator_last_tick_timestamp_seconds",
        "gauge",
        ("type", "name", "status"),
        "Unix time of the latest finished tick of each schedule and sensor, by status.",
    ),
    (
        "dagster_daemon_heartbeat_age_seconds",
        "gauge",
        ("daemon_type",),
        "Seconds since each daemon's last heartbeat; no series before a daemon's first heartbeat.",
    ),
    (
        "dagster_code_location_load_errors",
        "gauge",
        ("location",),
        "1 when the code location failed to load, else 0.",
    ),
    (
        "phlo_definitions_build_seconds",
        "gauge",
        ("location",),
        "Seconds the code location took to build its Definitions.",
    ),
    (
        "dagster_build_info",
        "gauge",
        ("dagster_version", "phlo_dagster_version"),
        "Always 1; the versions of Dagster and phlo-dagster the webserver runs.",
    ),
)
