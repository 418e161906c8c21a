"""The PhloWorkflow custom resource as one typed model: source of the CRD schema, defaults and validation."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from phlo_dagster import constants as c

GROUP = "phlo.dev"
VERSION = "v1alpha1"
KIND = "PhloWorkflow"
PLURAL = "phloworkflows"
SINGULAR = "phloworkflow"
SHORT_NAMES = ["pwf"]
CATEGORIES = ["phlo"]
API_VERSION = f"{GROUP}/{VERSION}"

# Env names the operator sets on Dagster containers; a user env entry may not replace them.
RESERVED_ENV = frozenset(
    {
        c.ENV_DAGSTER_HOME,
        c.ENV_WORKFLOWS_PATH,
        c.ENV_CODE_LOCATION_NAME,
        c.ENV_DBT_ENABLED,
        c.ENV_DBT_PROJECT_DIR,
        c.ENV_DBT_PROFILES_DIR,
        c.ENV_DBT_TARGET,
        c.ENV_DBT_TARGET_PATH,
        c.ENV_PG_HOST,
        c.ENV_PG_PORT,
        c.ENV_PG_USER,
        c.ENV_PG_PASSWORD,
        c.ENV_PG_DB,
        "DAGSTER_CURRENT_IMAGE",
    }
)

_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Kubernetes name rules, also enforced by the API server through the CRD's patterns.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
INT32_MAX = 2**31 - 1
DEFAULT_METRICS_SERVICE_PORT = 9090
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_QUALIFIED_KEY = re.compile(rf"^({DNS_SUBDOMAIN[1:-1]}/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}


def quantity_value(quantity: int | str) -> Decimal:
    """A Kubernetes quantity (already matched by _QUANTITY) as a number, to compare requests with limits."""
    text = str(quantity)
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * _SUFFIX[suffix]
    return Decimal(text)


def _check_keys(value: dict[str, str], what: str, label_values: bool = False) -> dict[str, str]:
    """Annotation and label keys (prefix/name), and label values, as the API server would judge them."""
    for key, val in value.items():
        prefix, _, name = key.rpartition("/")
        if not _QUALIFIED_KEY.match(key) or len(name) > 63 or len(prefix) > 253:
            raise ValueError(
                f"{key!r} is not a valid {what} key (optional DNS prefix/, then a name of <= 63 "
                "alphanumerics, '-', '_' or '.')"
            )
        if label_values and (len(val) > 63 or not _LABEL_VALUE.match(val)):
            raise ValueError(f"{key}: {val!r} is not a valid label value")
    return value


class InvalidSpec(ValueError):
    """A spec the API server accepted but the operator cannot run; the message names the field and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_enum_values=True
    )


def _preserve(description: str) -> Any:
    """An opaque Kubernetes-native object the API server validates when it is used in a child."""
    return Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class ResourceRequirements(_Model):
    """CPU and memory for a container, as in a Pod's resources."""

    limits: dict[str, int | str] | None = Field(
        default=None, description="Maximum resources, e.g. {cpu: '1', memory: 1Gi}."
    )
    requests: dict[str, int | str] | None = Field(
        default=None, description="Guaranteed resources, e.g. {cpu: 100m, memory: 256Mi}."
    )

    @field_validator("limits", "requests")
    @classmethod
    def _quantities(cls, value: dict[str, int | str] | None) -> dict[str, int | str] | None:
        for key, quantity in (value or {}).items():
            if not _QUALIFIED_KEY.match(key):
                raise ValueError(f"{key!r} is not a resource name (e.g. cpu, memory, nvidia.com/gpu)")
            if not _QUANTITY.match(str(quantity)) or str(quantity).startswith("-"):
                raise ValueError(
                    f"{key}: {quantity!r} is not a Kubernetes quantity (examples: 500m, 1, 256Mi, 2Gi)"
                )
        return value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for key, limit in (self.limits or {}).items():
            request = (self.requests or {}).get(key)
            if request is not None and quantity_value(request) > quantity_value(limit):
                raise ValueError(f"requests.{key} ({request}) must not exceed limits.{key} ({limit})")
        return self


class KeySelector(_Model):
    """One key of a Secret or ConfigMap in the PhloWorkflow's namespace."""

    name: str = Field(description="Name of the Secret or ConfigMap.", min_length=1, pattern=DNS_SUBDOMAIN)
    key: str = Field(description="The key to read.", min_length=1)
    optional: bool | None = Field(default=None, description="Allow the object or key to be missing.")


class FieldSelector(_Model):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    api_version: str | None = Field(default=None, description="API version of fieldPath (default v1).")
    field_path: str = Field(description="Path of the field, e.g. metadata.namespace.", min_length=1)


class ResourceFieldSelector(_Model):
    """A container's resource limit or request, e.g. limits.memory."""

    container_name: str | None = Field(default=None, description="Container (default: this one).")
    resource: str = Field(description="Resource to expose, e.g. limits.cpu.", min_length=1)
    divisor: int | str | None = Field(default=None, description="Output unit, e.g. 1Mi (default 1).")


class EnvVarSource(_Model):
    """Where an environment variable's value comes from (exactly one source)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0)"
                    " + (has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
                    "message": "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef",
                }
            ]
        }
    )

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A resource limit or request of a container."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        chosen = [self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref]
        if sum(v is not None for v in chosen) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")
        return self


class EnvVar(_Model):
    """One environment variable, as in a container's env."""

    name: str = Field(description="Variable name.", min_length=1)
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
    )


class ObjectRef(_Model):
    """A whole ConfigMap or Secret in the PhloWorkflow's namespace."""

    name: str = Field(description="Name of the ConfigMap or Secret.", min_length=1, pattern=DNS_SUBDOMAIN)
    optional: bool | None = Field(default=None, description="Allow it to be missing.")


class EnvFromSource(_Model):
    """A ConfigMap or Secret whose keys all become environment variables."""

    config_map_ref: ObjectRef | None = Field(
        default=None, description="ConfigMap to read ({name, optional})."
    )
    secret_ref: ObjectRef | None = Field(default=None, description="Secret to read ({name, optional}).")
    prefix: str | None = Field(default=None, description="Prefix added to every variable name.")


class Toleration(_Model):
    """A toleration, as in a Pod spec."""

    key: str | None = Field(default=None, description="Taint key (empty with Exists: every taint).")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default)."
    )
    value: str | None = Field(default=None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate (empty: all)."
    )
    toleration_seconds: int | None = Field(
        default=None, description="Seconds a NoExecute taint is tolerated before eviction."
    )


class _PodAnnotated(_Model):
    """A component whose `podAnnotations` keys are checked as the API server checks annotation keys."""

    @field_validator("pod_annotations", check_fields=False)
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "annotation")


class Workflows(_Model):
    """Where the Phlo workflow modules live inside the image."""

    path: str = Field(
        default=c.DEFAULT_IMAGE_WORKFLOWS_PATH,
        description="Directory inside the image scanned for workflow modules (WORKFLOWS_PATH).",
        min_length=1,
    )


class Dbt(_PodAnnotated):
    """The dbt project compiled by a Job before each code-server rollout."""

    enabled: bool = Field(default=False, description="Compile the dbt project and load its models as assets.")
    project_dir: str = Field(
        default="/app/dbt", description="dbt project directory inside the image.", min_length=1
    )
    profiles_dir: str | None = Field(
        default=None,
        description="Directory holding profiles.yml inside the image (default: the project dir).",
    )
    target: str | None = Field(default=None, description="dbt target name (default: the profile's default).")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the dbt-compile Job's pod."
    )


class Webserver(_PodAnnotated):
    """The Dagster webserver: UI, GraphQL API and Prometheus /metrics."""

    replicas: int = Field(
        default=1,
        ge=0,
        le=INT32_MAX,
        description="Webserver pods. Left alone when a HorizontalPodAutoscaler targets the Deployment.",
    )
    port: int = Field(
        default=c.DEFAULT_WEBSERVER_PORT, ge=1, le=65535, description="HTTP port (UI, /graphql, /metrics)."
    )
    resources: ResourceRequirements | None = Field(default=None, description="Webserver container resources.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the webserver Service."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on webserver pods."
    )


class Daemon(_PodAnnotated):
    """The Dagster daemon (schedules, sensors, run queue); always exactly one pod."""

    resources: ResourceRequirements | None = Field(default=None, description="Daemon container resources.")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on the daemon pod."
    )


class CodeServer(_PodAnnotated):
    """The gRPC user-code server that loads the Phlo definitions."""

    replicas: int = Field(
        default=1,
        ge=0,
        le=INT32_MAX,
        description="Code-server pods. Left alone when a HorizontalPodAutoscaler targets the Deployment.",
    )
    port: int = Field(default=c.DEFAULT_CODE_SERVER_PORT, ge=1, le=65535, description="gRPC port.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Code-server container resources."
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on code-server pods."
    )


class Postgres(_Model):
    """Dagster's run, event and schedule storage."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.secretName) && has(self.managed) && self.managed)",
                    "message": "set either secretName (an existing Secret) or managed: true, not both",
                },
                {
                    "rule": "has(self.secretName) || !has(self.managed) || self.managed",
                    "message": "managed: false needs secretName (keys host, port, user, password, database)",
                },
            ]
        }
    )

    secret_name: str | None = Field(
        default=None,
        description="Existing Secret with keys host, port, user, password, database. Excludes managed: true.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    managed: bool | None = Field(
        default=None,
        description="PostgreSQL StatefulSet + PVC + generated Secret (default without secretName).",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="On CR deletion keep (Retain) or delete (Delete) the managed PostgreSQL PVC and Secret.",
    )
    image: str = Field(
        default="postgres:17-alpine", description="Image of the managed PostgreSQL.", min_length=1
    )
    storage_size: str = Field(
        default="1Gi",
        description="Size of the managed PostgreSQL volume.",
        json_schema_extra={"pattern": _QUANTITY.pattern},
    )
    storage_class_name: str | None = Field(
        default=None,
        description="StorageClass of the managed PostgreSQL volume (default: the cluster default).",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Managed PostgreSQL container resources."
    )

    @property
    def is_managed(self) -> bool:
        """managed defaults to true unless an existing Secret is named."""
        return self.managed if self.managed is not None else self.secret_name is None

    @model_validator(mode="after")
    def _one_source(self) -> Postgres:
        if self.secret_name and self.managed:
            raise ValueError("storage.postgres: set either secretName or managed: true, not both")
        if self.managed is False and not self.secret_name:
            raise ValueError("storage.postgres: managed: false needs secretName")
        if not _QUANTITY.match(self.storage_size):
            raise ValueError(
                f"storage.postgres.storageSize: {self.storage_size!r} is not a Kubernetes quantity"
            )
        return self


class Storage(_Model):
    """Where Dagster keeps its state."""

    postgres: Postgres = Field(
        default_factory=Postgres, description="PostgreSQL storage: managed or an existing Secret."
    )


class RunLauncher(_Model):
    """How runs are launched: one Kubernetes Job per run (dagster-k8s K8sRunLauncher)."""

    namespace: str | None = Field(
        default=None,
        description="Namespace of run Jobs (default: the PhloWorkflow's namespace).",
        max_length=63,
        pattern=DNS_LABEL,
    )
    job_ttl_seconds: int = Field(
        default=3600,
        alias="jobTTLSeconds",
        ge=0,
        le=INT32_MAX,
        description="Seconds a finished run Job (and its pod) is kept before deletion.",
    )


class ServiceMonitor(_Model):
    """A Prometheus Operator ServiceMonitor for the webserver's /metrics."""

    enabled: bool = Field(default=False, description="Create it (only when the ServiceMonitor CRD exists).")
    interval: str = Field(default="30s", description="Scrape interval.", pattern=r"^[0-9]+(ms|s|m|h)$")


class Metrics(_Model):
    """Prometheus metrics of the webserver."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.serviceMonitor) && has(self.serviceMonitor.enabled)"
                    " && self.serviceMonitor.enabled)"
                    " || !has(self.enabled) || self.enabled",
                    "message": "serviceMonitor.enabled needs metrics.enabled",
                }
            ]
        }
    )

    enabled: bool = Field(
        default=True, description="Expose /metrics and annotate the webserver for scraping."
    )
    port: int = Field(
        default=DEFAULT_METRICS_SERVICE_PORT,
        ge=1,
        le=65535,
        description="Port `metrics` of the webserver Service; it forwards to the webserver's HTTP port, "
        "which serves /metrics. Must differ from webserver.port.",
    )
    service_monitor: ServiceMonitor = Field(
        default_factory=ServiceMonitor, description="ServiceMonitor settings."
    )


class PhloWorkflowSpec(_Model):
    """Desired state of a Dagster deployment running Phlo workflows."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.metrics) || !has(self.metrics.port) || !has(self.webserver)"
                    " || !has(self.webserver.port) || self.metrics.port != self.webserver.port",
                    "message": "metrics.port must differ from webserver.port (both are ports of one Service)",
                }
            ]
        }
    )

    image: str = Field(
        description="Image with phlo-dagster, the workflows and the dbt project.",
        min_length=1,
        pattern=r"^\S+$",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of every Dagster container."
    )
    workflows: Workflows = Field(default_factory=Workflows, description="Workflow modules inside the image.")
    dbt: Dbt = Field(default_factory=Dbt, description="dbt project compiled before each code-server rollout.")
    webserver: Webserver = Field(default_factory=Webserver, description="The Dagster webserver.")
    daemon: Daemon = Field(default_factory=Daemon, description="The Dagster daemon (one pod).")
    code_server: CodeServer = Field(default_factory=CodeServer, description="The gRPC code server.")
    storage: Storage = Field(default_factory=Storage, description="Dagster storage.")
    run_launcher: RunLauncher = Field(default_factory=RunLauncher, description="Run Jobs.")
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra env of every Dagster container and run (names the operator sets are refused).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        description="ConfigMaps/Secrets whose keys become environment of Dagster containers.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels every pod requires.")
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of every pod, as in a Pod spec."
    )
    affinity: dict[str, Any] | None = _preserve("Affinity of every pod, as in a Pod spec.")
    service_account_name: str | None = Field(
        default=None,
        description="Existing ServiceAccount for Dagster pods and runs (the run Role is bound to it).",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    metrics: Metrics = Field(default_factory=Metrics, description="Prometheus metrics.")
    suspend: bool = Field(
        default=False, description="Scale every Dagster Deployment to 0; storage and data are kept."
    )

    @model_validator(mode="after")
    def _distinct_service_ports(self) -> PhloWorkflowSpec:
        if self.metrics.enabled and self.metrics.port == self.webserver.port:
            raise ValueError("metrics.port must differ from webserver.port (both are ports of one Service)")
        return self

    @field_validator("node_selector")
    @classmethod
    def _node_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "label", label_values=True)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        seen: set[str] = set()
        for var in env:
            if var.name in RESERVED_ENV:
                raise ValueError(f"{var.name} is set by the operator; remove it from spec.env")
            if not _ENV_NAME.match(var.name):
                raise ValueError(f"{var.name!r} is not a valid environment variable name")
            if var.name in seen:
                raise ValueError(f"{var.name} appears twice")
            seen.add(var.name)
        return env


def parse_spec(spec: dict[str, Any]) -> PhloWorkflowSpec:
    """Validate a CR's spec; raise InvalidSpec naming every bad field (never a traceback)."""
    try:
        return PhloWorkflowSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidSpec(format_errors(exc)) from None


def format_errors(exc: ValidationError) -> str:
    """One line per problem: spec.<path>: <message>."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in ("spec", *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    return "; ".join(lines)
