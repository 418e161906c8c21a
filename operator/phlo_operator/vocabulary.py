"""The operator's fixed vocabulary: condition types, their reasons, Event reasons and component names.
Users and scripts read every string here (`kubectl wait --for=condition=Ready`, alerts on reasons); the docs
tables and the CRD's `kubectl explain` texts are generated from this module. Changing a value breaks them."""

from __future__ import annotations

from collections.abc import Mapping

CONDITIONS: dict[str, str] = {}
REASONS: dict[str, str] = {}
EVENTS: dict[str, str] = {}
COMPONENTS: dict[str, str] = {}


def _term(table: dict[str, str], name: str, doc: str) -> str:
    if name in table:
        raise ValueError(f"{name!r} is defined twice")
    table[name] = doc
    return name


# -- condition types (status.conditions[].type)
READY = _term(CONDITIONS, "Ready", "Webserver, daemon, code server and storage are available.")
PROGRESSING = _term(CONDITIONS, "Progressing", "A dbt compile or a rollout is under way.")
DEGRADED = _term(CONDITIONS, "Degraded", "Something needs attention; the reason says what.")
WEBSERVER_READY = _term(CONDITIONS, "WebserverReady", "The webserver Deployment is rolled out and available.")
DAEMON_READY = _term(CONDITIONS, "DaemonReady", "The daemon Deployment is rolled out and available.")
CODE_SERVER_READY = _term(
    CONDITIONS, "CodeServerReady", "The code-server Deployment is rolled out and available."
)
DBT_COMPILED = _term(CONDITIONS, "DbtCompiled", "The dbt-compile Job for the current inputs succeeded.")
STORAGE_READY = _term(CONDITIONS, "StorageReady", "The PostgreSQL storage and its Secret are usable.")
CODE_LOCATION_LOADED = _term(
    CONDITIONS,
    "CodeLocationLoaded",
    "The webserver reports the code location loaded, so a run launched now finds its job.",
)
MIGRATED = _term(
    CONDITIONS,
    "Migrated",
    "The instance database is at the schema of the Dagster version the webserver and daemon run "
    "(status.instance); False: a version gate or migration failed and the old version keeps serving.",
)

# -- condition reasons (status.conditions[].reason)
AVAILABLE = _term(REASONS, "Available", "Ready, a component or managed PostgreSQL is available.")
COMPONENTS_NOT_READY = _term(REASONS, "ComponentsNotReady", "Ready=False: the message lists what is not.")
SUSPENDED = _term(REASONS, "Suspended", "spec.suspend is true: Dagster is scaled to 0, data is kept.")
INVALID_SPEC = _term(REASONS, "InvalidSpec", "The operator refused the spec; the message names the field.")
APPLY_FAILED = _term(REASONS, "ApplyFailed", "An API call failed; the message is the server's. Retried.")
DBT_COMPILING = _term(REASONS, "DbtCompiling", "The dbt-compile Job for new inputs is running.")
DBT_COMPILE_FAILED = _term(
    REASONS, "DbtCompileFailed", "The dbt-compile Job failed; the old code keeps serving."
)
STORAGE_SECRET_INVALID = _term(
    REASONS, "StorageSecretInvalid", "The storage Secret is missing or lacks a key."
)
STORAGE_SECRET_LOST = _term(
    REASONS,
    "StorageSecretLost",
    "The managed PostgreSQL Secret is gone while its volume holds data; restore it or delete the PVC.",
)
REFERENCE_NOT_FOUND = _term(
    REASONS,
    "ReferenceNotFound",
    "A Secret, ConfigMap (or key) or ServiceAccount the spec names for the pods does not exist.",
)
PROGRESS_DEADLINE_EXCEEDED = _term(
    REASONS, "ProgressDeadlineExceeded", "A Deployment rollout stalled (its progress deadline passed)."
)
AS_EXPECTED = _term(REASONS, "AsExpected", "Degraded=False: no problems observed.")
ROLLING_OUT = _term(REASONS, "RollingOut", "A Deployment or StatefulSet is rolling out a new template.")
IDLE = _term(REASONS, "Idle", "Progressing=False: nothing is rolling out.")
NOT_FOUND = _term(REASONS, "NotFound", "The component's Deployment or StatefulSet does not exist yet.")
UNAVAILABLE = _term(REASONS, "Unavailable", "Fewer pods available than wanted.")
SCALED_TO_ZERO = _term(REASONS, "ScaledToZero", "The component's replicas is 0.")
EXTERNAL_SECRET = _term(
    REASONS, "ExternalSecret", "StorageReady: PostgreSQL named by storage.postgres.secretName."
)
DISABLED = _term(REASONS, "Disabled", "DbtCompiled=True: dbt is disabled.")
SUCCEEDED = _term(REASONS, "Succeeded", "DbtCompiled=True: the compile Job succeeded.")
RUNNING = _term(REASONS, "Running", "DbtCompiled=False: the compile Job is running.")
JOB_PENDING = _term(REASONS, "JobPending", "DbtCompiled=False: the compile Job is not created yet.")
FAILED = _term(REASONS, "Failed", "DbtCompiled=False: the Job failed without a reason of its own.")
LOADED = _term(REASONS, "Loaded", "CodeLocationLoaded=True: the webserver lists the location's jobs.")
LOADING = _term(REASONS, "Loading", "CodeLocationLoaded=False: the webserver is still loading the location.")
LOAD_ERROR = _term(
    REASONS, "LoadError", "CodeLocationLoaded=False: the location failed to load; a reload was requested."
)
OUTDATED = _term(
    REASONS,
    "Outdated",
    "CodeLocationLoaded=False: the webserver serves earlier code; a reload was requested.",
)
NOT_IN_WORKSPACE = _term(REASONS, "NotInWorkspace", "CodeLocationLoaded=False: the workspace lacks it.")
WEBSERVER_UNREACHABLE = _term(
    REASONS, "WebserverUnreachable", "CodeLocationLoaded=False: the webserver's GraphQL API does not answer."
)
WAITING_FOR_PODS = _term(
    REASONS, "WaitingForPods", "CodeLocationLoaded=False: the webserver or code server is not available yet."
)
CODE_LOCATION_NOT_LOADED = _term(
    REASONS,
    "CodeLocationNotLoaded",
    "Ready=False: pods are available but the webserver has not loaded the code.",
)
UP_TO_DATE = _term(
    REASONS,
    "UpToDate",
    "Migrated=True: no migration was needed (a new database, or the same Dagster version).",
)
INSTANCE_MIGRATED = _term(
    REASONS,
    "InstanceMigrated",
    "Migrated=True: `dagster instance migrate` ran for the current Dagster version.",
)
READING_VERSION = _term(
    REASONS,
    "ReadingVersion",
    "Migrated=Unknown: the version gate Job reads the Dagster version of a new spec.image; the webserver and "
    "daemon wait.",
)
MIGRATING = _term(
    REASONS,
    "Migrating",
    "Migrated=Unknown, Progressing=True: the migrate Job runs; the webserver and daemon keep the old image.",
)
VERSION_GATE_FAILED = _term(
    REASONS,
    "VersionGateFailed",
    "Migrated=False, Degraded=True: the Dagster version of spec.image could not be read (the Job's message "
    "says why); the old image keeps serving.",
)
MIGRATION_FAILED = _term(
    REASONS,
    "MigrationFailed",
    "Migrated=False, Degraded=True: `dagster instance migrate` failed (the message has its error); the old "
    "image keeps serving. Delete the migrate Job to retry.",
)
# Also DbtCompiled=False reasons: the failed Job's own condition reason (e.g. BackoffLimitExceeded).

# -- Event reasons (core/v1 Events on the PhloWorkflow). Transitions post these, and a Warning with the new
# condition reason (from REASONS above) when Ready turns False or Degraded turns True.
EVENT_READY = _term(EVENTS, "Ready", "Normal: Ready turned True.")
EVENT_NOT_READY = _term(EVENTS, "NotReady", "Warning: Ready turned False (fallback when it has no reason).")
EVENT_RECOVERED = _term(EVENTS, "Recovered", "Normal: Degraded turned False.")
EVENT_DEGRADED = _term(EVENTS, "Degraded", "Warning: Degraded turned True (fallback when it has no reason).")
EVENT_DBT_COMPILED = _term(EVENTS, "DbtCompiled", "Normal: the dbt compile for new inputs succeeded.")
EVENT_DBT_NOT_COMPILED = _term(
    EVENTS, "DbtNotCompiled", "Warning: DbtCompiled turned False (fallback when it has no reason)."
)
EVENT_DBT_COMPILE_STARTED = _term(EVENTS, "DbtCompileStarted", "Normal: a dbt-compile Job was created.")
EVENT_INSTANCE_MIGRATION_STARTED = _term(
    EVENTS, "InstanceMigrationStarted", "Normal: a migrate Job was created for a new Dagster version."
)
EVENT_INSTANCE_MIGRATED = _term(
    EVENTS,
    "InstanceMigrated",
    "Normal: the migration succeeded; the webserver and daemon move to the new image.",
)
EVENT_INSTANCE_MIGRATION_FAILED = _term(
    EVENTS, "InstanceMigrationFailed", "Warning: the migrate Job or the version gate failed."
)
EVENT_CODE_SERVER_ROLLOUT = _term(
    EVENTS, "CodeServerRollout", "Normal: a new code-server template rolls out."
)
EVENT_CODE_LOCATION_RELOADED = _term(
    EVENTS, "CodeLocationReloaded", "Normal: the webserver reloaded the code location after a rollout."
)
EVENT_RELOAD_FAILED = _term(EVENTS, "ReloadFailed", "Warning: asking the webserver to reload failed.")
EVENT_SERVICE_MONITOR_UNAVAILABLE = _term(
    EVENTS,
    "ServiceMonitorUnavailable",
    "Warning: a ServiceMonitor is asked for but its API is not installed.",
)
EVENT_HTTP_ROUTE_UNAVAILABLE = _term(
    EVENTS,
    "HTTPRouteUnavailable",
    "Warning: an HTTPRoute is asked for but the Gateway API (gateway.networking.k8s.io/v1) is not installed.",
)
EVENT_EXPOSED_WITHOUT_AUTHENTICATION = _term(
    EVENTS,
    "ExposedWithoutAuthentication",
    "Warning: an Ingress or HTTPRoute exposes the UI and no spec.auth proxy stands in front of it.",
)
EVENT_RUN_NAMESPACE_CLEANUP_FAILED = _term(
    EVENTS,
    "RunNamespaceCleanupFailed",
    "Warning: objects in the old runLauncher.namespace could not be deleted.",
)

# -- components (the app.kubernetes.io/component label and the child name suffix)
WEBSERVER = _term(COMPONENTS, "webserver", "Deployment and Service: the UI, /graphql and /metrics.")
WEBSERVER_READ_ONLY = _term(
    COMPONENTS, "webserver-ro", "Deployment and Service: a read-only webserver (webserver.readOnly)."
)
DAEMON = _term(COMPONENTS, "daemon", "Deployment: schedules, sensors, the run queue; one replica, Recreate.")
CODE_SERVER = _term(COMPONENTS, "code-server", "Deployment and Service: the gRPC code location.")
CODE_LOCATION = _term(
    COMPONENTS,
    "code-location",
    "Deployment, Service, NetworkPolicy and PDB of a spec.codeLocations entry other than phlo (which keeps "
    "code-server); label phlo.dev/code-location names it.",
)
DBT_COMPILE = _term(COMPONENTS, "dbt-compile", "Job: `phlo dbt compile`, named by the hash of its inputs.")
DAGSTER_VERSION = _term(
    COMPONENTS,
    "dagster-version",
    "Job: reads the Dagster version from spec.image (one per image), through its termination message.",
)
INSTANCE_MIGRATE = _term(
    COMPONENTS,
    "instance-migrate",
    "Job: `dagster instance migrate` in a new spec.image before the webserver and daemon move to it "
    "(one per image and Dagster version).",
)
POSTGRES = _term(COMPONENTS, "postgres", "StatefulSet, Service and Secret of the managed PostgreSQL.")
CONFIG = _term(COMPONENTS, "config", "ConfigMaps: dagster.yaml and workspace.yaml.")
MONITORING = _term(COMPONENTS, "monitoring", "ServiceMonitor of the webserver's /metrics.")
RBAC = _term(COMPONENTS, "rbac", "ServiceAccount, Role and RoleBinding that let Dagster launch run Jobs.")
RUN = _term(COMPONENTS, "run", "Pods of Dagster runs (label only, on the Jobs dagster-k8s launches).")

# The condition per Dagster Deployment, in the order status lists them.
COMPONENT_CONDITIONS: Mapping[str, str] = {
    WEBSERVER: WEBSERVER_READY,
    DAEMON: DAEMON_READY,
    CODE_SERVER: CODE_SERVER_READY,
}


def markdown() -> str:
    """The README's vocabulary tables."""
    out: list[str] = []
    for title, table in (
        ("Condition type", CONDITIONS),
        ("Condition reason", REASONS),
        ("Event reason", EVENTS),
        ("Component", COMPONENTS),
    ):
        out += [f"| {title} | Meaning |", "|---|---|"]
        out += [f"| `{name}` | {doc} |" for name, doc in table.items()]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
