"""The PhloWorkflow custom resource as one typed model: source of the CRD schema, defaults and validation."""

from __future__ import annotations

import re
from decimal import Decimal, Overflow, localcontext
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from phlo_dagster import constants as c
from phlo_operator import names, pod_fragment
from phlo_operator.instance_schema import max_concurrency_limit

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
        "DAGSTER_CONTAINER_CONTEXT",
    }
)

# Every regex below is matched with fullmatch (or by the API server, whose `$` is the end of the text):
# `re.match(r"...$")` accepts a trailing newline.
_SUFFIXES = r"([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?"
_QUANTITY = re.compile(rf"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+){_SUFFIXES}$")
# A volume size: above zero, no sign.
_POSITIVE_QUANTITY = rf"^([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*){_SUFFIXES}$"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# An absolute path inside the image, without control characters.
ABSOLUTE_PATH = r"^/[^\x00-\x1f\x7f]*$"
# A dbt target name: printable, no spaces.
_TARGET = r"^[^\x00-\x20\x7f]+$"
# An image reference: [registry[:port]/]path[:tag][@digest], path components in lower case (as registries
# and the container runtimes parse it).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
)
IMAGE_REFERENCE = (
    rf"^(?:{_REGISTRY}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# Linux refuses to exec with an environment string above 128 KiB (MAX_ARG_STRLEN); a character is at most
# 4 bytes in UTF-8.
ENV_VALUE_MAX = 32768
ENV_NAME_MAX = 256
# Pod annotations hold 256 KiB in all; one value may take a quarter.
ANNOTATION_VALUE_MAX = 65536
INT64_MAX = 2**63 - 1
# Container resources without a domain prefix that Kubernetes knows (hugepages-<size> too).
STANDARD_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
# Pod fields a fieldRef may expose, and container resources a resourceFieldRef may.
_FIELD_PATHS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
_FIELD_PATH_MAPS = re.compile(r"metadata\.(labels|annotations)\['[^'\x00-\x1f]+'\]")
_RESOURCE_FIELD = re.compile(r"(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[A-Za-z0-9.]+)")
# Kubernetes name rules, also enforced by the API server through the CRD's patterns.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A key of a Secret or ConfigMap: alphanumerics, '-', '_' and '.'; not '.', not starting with '..'.
CONFIG_KEY = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$"
INT32_MAX = 2**31 - 1
# A URL path prefix: segments of unreserved characters (and percent escapes), no trailing slash.
PATH_PREFIX = r"^(/[-A-Za-z0-9._~%]+)+$"
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
    with localcontext() as ctx:
        ctx.traps[Overflow] = False  # 1e999999999: Infinity, which is larger than any limit
        for suffix in sorted(_SUFFIX, key=len, reverse=True):
            if suffix and text.endswith(suffix):
                return Decimal(text[: -len(suffix)]) * _SUFFIX[suffix]
        return +Decimal(text)


def _check_keys(value: dict[str, str], what: str, label_values: bool = False) -> dict[str, str]:
    """Annotation and label keys (prefix/name), and label values, as the API server would judge them."""
    for key, val in value.items():
        prefix, _, name = key.rpartition("/")
        if not _QUALIFIED_KEY.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
            raise ValueError(
                f"{key!r} is not a valid {what} key (optional DNS prefix/, then a name of <= 63 "
                "alphanumerics, '-', '_' or '.')"
            )
        if label_values and (len(val) > 63 or not _LABEL_VALUE.fullmatch(val)):
            raise ValueError(f"{key}: {val!r} is not a valid label value")
    return value


AnnotationValue = Annotated[str, Field(max_length=ANNOTATION_VALUE_MAX)]


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
            standard = key in STANDARD_RESOURCES or key.startswith("hugepages-")
            if not _QUALIFIED_KEY.fullmatch(key) or ("/" not in key and not standard):
                raise ValueError(
                    f"{key!r} is not a resource name (cpu, memory, ephemeral-storage, hugepages-<size>, "
                    "or one with a domain such as nvidia.com/gpu)"
                )
            if not _QUANTITY.fullmatch(str(quantity)) or str(quantity).startswith("-"):
                raise ValueError(
                    f"{key}: {quantity!r} is not a Kubernetes quantity (examples: 500m, 1, 256Mi, 2Gi)"
                )
            amount = quantity_value(quantity)
            if amount > INT64_MAX:
                raise ValueError(f"{key}: {quantity!r} is larger than Kubernetes can hold")
            if _extended(key) and amount != amount.to_integral_value():
                raise ValueError(f"{key}: {quantity!r} must be a whole number (an extended resource)")
            if key.startswith("hugepages-"):
                page = key.removeprefix("hugepages-")
                if not _QUANTITY.fullmatch(page) or quantity_value(page) <= 0:
                    raise ValueError(
                        f"{key!r} is not a resource name (hugepages-<page size>, e.g. hugepages-2Mi)"
                    )
                if amount <= 0 or amount % quantity_value(page):
                    raise ValueError(f"{key}: {quantity!r} must be a whole number of {page} pages")
        return value

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        limits, requests = self.limits or {}, self.requests or {}
        for key, limit in limits.items():
            request = requests.get(key)
            if request is not None and quantity_value(request) > quantity_value(limit):
                raise ValueError(f"requests.{key} ({request}) must not exceed limits.{key} ({limit})")
        for key, request in requests.items():
            # Hugepages and extended resources cannot be overcommitted: Kubernetes wants the limit, equal.
            fixed = key.startswith("hugepages-") or _extended(key)
            if fixed and (key not in limits or quantity_value(limits[key]) != quantity_value(request)):
                raise ValueError(
                    f"requests.{key} needs limits.{key} of the same amount (it cannot be overcommitted)"
                )
        if any(k.startswith("hugepages-") for k in (*limits, *requests)):
            if not {"cpu", "memory"} & {*limits, *requests}:
                raise ValueError("hugepages need cpu or memory set too (Kubernetes refuses them alone)")
        return self


def _extended(resource: str) -> bool:
    """An extended resource (e.g. nvidia.com/gpu): domain-qualified, outside kubernetes.io."""
    return "/" in resource and not resource.split("/", 1)[0].endswith("kubernetes.io")


class KeySelector(_Model):
    """One key of a Secret or ConfigMap in the PhloWorkflow's namespace."""

    name: str = Field(description="Name of the Secret or ConfigMap.", min_length=1, pattern=DNS_SUBDOMAIN)
    key: str = Field(description="The key to read.", min_length=1, max_length=253, pattern=CONFIG_KEY)
    optional: bool | None = Field(default=None, description="Allow the object or key to be missing.")


class FieldSelector(_Model):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    api_version: str | None = Field(default=None, description="API version of fieldPath (default v1).")
    field_path: str = Field(description="Path of the field, e.g. metadata.namespace.", min_length=1)

    @field_validator("field_path")
    @classmethod
    def _exposable(cls, value: str) -> str:
        if value not in _FIELD_PATHS and not _FIELD_PATH_MAPS.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a pod field an env var can read ({', '.join(sorted(_FIELD_PATHS))}, "
                "metadata.labels['<key>'], metadata.annotations['<key>'])"
            )
        return value


class ResourceFieldSelector(_Model):
    """A container's resource limit or request, e.g. limits.memory."""

    container_name: str | None = Field(default=None, description="Container (default: this one).")
    resource: str = Field(description="Resource to expose, e.g. limits.cpu.", min_length=1)

    @field_validator("resource")
    @classmethod
    def _exposable(cls, value: str) -> str:
        if not _RESOURCE_FIELD.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a container resource an env var can read (limits.<r> or requests.<r>, "
                "r: cpu, memory, ephemeral-storage, hugepages-<size>)"
            )
        return value

    divisor: int | str | None = Field(default=None, description="Output unit, e.g. 1Mi (default 1).")

    @model_validator(mode="after")
    def _divisor(self) -> ResourceFieldSelector:
        if self.divisor is None:
            return self
        text = str(self.divisor)
        allowed = _CPU_DIVISORS if self.resource.endswith(".cpu") else _BYTE_DIVISORS
        valid = _QUANTITY.fullmatch(text) and quantity_value(text) in {quantity_value(d) for d in allowed}
        if not valid:
            raise ValueError(f"divisor {text!r} for {self.resource}: one of {', '.join(allowed)}")
        return self


_CPU_DIVISORS = ("1m", "1")
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


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

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.value) && has(self.valueFrom))",
                    "message": "set value or valueFrom, not both (value and valueFrom exclude each other)",
                }
            ]
        }
    )

    name: str = Field(description="Variable name.", min_length=1, max_length=ENV_NAME_MAX)
    value: str | None = Field(default=None, description="Literal value.", max_length=ENV_VALUE_MAX)
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Source for the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
    )

    @model_validator(mode="after")
    def _one_value(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both (value and valueFrom exclude each other)")
        return self


class ObjectRef(_Model):
    """A whole ConfigMap or Secret in the PhloWorkflow's namespace."""

    name: str = Field(description="Name of the ConfigMap or Secret.", min_length=1, pattern=DNS_SUBDOMAIN)
    optional: bool | None = Field(default=None, description="Allow it to be missing.")


class EnvFromSource(_Model):
    """A ConfigMap or Secret whose keys all become environment variables."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.configMapRef) != has(self.secretRef)",
                    "message": "set exactly one of configMapRef or secretRef",
                }
            ]
        }
    )

    config_map_ref: ObjectRef | None = Field(
        default=None, description="ConfigMap to read ({name, optional})."
    )
    secret_ref: ObjectRef | None = Field(default=None, description="Secret to read ({name, optional}).")
    prefix: str | None = Field(
        default=None, description="Prefix added to every variable name.", max_length=ENV_NAME_MAX
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} would not start valid environment variable names")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise ValueError("set exactly one of configMapRef or secretRef")
        return self


class Toleration(_Model):
    """A toleration, as in a Pod spec."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value)"
                    " || self.value == ''",
                    "message": "value must be empty when operator is Exists",
                },
                {
                    "rule": "!has(self.tolerationSeconds)"
                    " || (has(self.effect) && self.effect == 'NoExecute')",
                    "message": "tolerationSeconds needs effect: NoExecute",
                },
            ]
        }
    )

    key: str | None = Field(default=None, description="Taint key (empty with Exists: every taint).")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default)."
    )
    value: str | None = Field(default=None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate (empty: all)."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="Seconds a NoExecute taint is tolerated before eviction.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        # Not a schema bound: the API server reads int64 bounds in a CRD as floats, then refuses any value.
        if self.toleration_seconds is not None and not -INT64_MAX - 1 <= self.toleration_seconds <= INT64_MAX:
            raise ValueError("tolerationSeconds must fit in 64 bits")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect: NoExecute")
        return self


class _PodAnnotated(_Model):
    """A component whose `podAnnotations` keys are checked as the API server checks annotation keys."""

    @field_validator("pod_annotations", check_fields=False)
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "annotation")


def _check_env(env: list[EnvVar], field: str) -> list[EnvVar]:
    """Names the operator sets are refused; names must be valid and distinct."""
    seen: set[str] = set()
    for var in env:
        if var.name in RESERVED_ENV:
            raise ValueError(f"{var.name} is set by the operator; remove it from {field}")
        if not _ENV_NAME.fullmatch(var.name):
            raise ValueError(f"{var.name!r} is not a valid environment variable name")
        if var.name in seen:
            raise ValueError(f"{var.name} appears twice")
        seen.add(var.name)
    return env


_OVERRIDES_HELP = (
    "A PodTemplateSpec fragment ({metadata: {labels, annotations}, spec: {...}}) merged last into the pod "
    "template, with Kubernetes' strategic-merge rules: containers, initContainers, volumes, env and "
    "imagePullSecrets merged by name, volumeMounts by mountPath, ports by containerPort; maps merged; other "
    "lists and scalars replaced; null removes a field. For volumes and mounts, sidecars, init containers and "
    "security-context changes. A new container starts from the hardened security context; anything Pod "
    "Security 'restricted' refuses (privileged, privilege escalation, root, added capabilities other than "
    "NET_BIND_SERVICE, seccomp other than RuntimeDefault/Localhost, host namespaces, ports or paths) is "
    "refused with InvalidSpec naming the field, and nothing is applied."
)


# Bounds on a component's env, envFrom and tolerations: each item carries CEL rules, and the API server
# refuses a CRD whose estimated rule cost (rules x items) exceeds its budget.
COMPONENT_LIST_MAX = 64


class PodSettings(_PodAnnotated):
    """Settings of one component's pods. Each adds to, or overrides, the spec-level setting of the same name:
    env by name (the component's entry wins), envFrom appended, nodeSelector merged (the component's value
    wins), tolerations appended, affinity merged per kind (nodeAffinity, podAffinity, podAntiAffinity: the
    component's wins); then podOverrides is merged over the result."""

    # The containers the operator renders in this component's pods (podOverrides may change them).
    CONTAINERS: ClassVar[frozenset[str]] = frozenset()

    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra env of this component's main container, after spec.env: an entry with the name "
        "of a spec.env entry replaces it (names the operator sets are refused).",
        max_length=COMPONENT_LIST_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        description="ConfigMaps/Secrets whose keys become env of this component's main container, after "
        "spec.envFrom (a later source wins a duplicate key).",
        max_length=COMPONENT_LIST_MAX,
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels this component's pods require, merged over spec.nodeSelector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Tolerations of this component's pods, after spec.tolerations.",
        max_length=COMPONENT_LIST_MAX,
    )
    affinity: dict[str, Any] | None = _preserve(
        "Affinity of this component's pods, as in a Pod spec; each of nodeAffinity, podAffinity and "
        "podAntiAffinity set here replaces the one in spec.affinity."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels of this component's pods and of its Deployment or Job (the operator's "
        "app.kubernetes.io/ labels are refused).",
    )
    priority_class_name: str | None = Field(
        default=None,
        description="PriorityClass of this component's pods.",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    pod_overrides: dict[str, Any] | None = _preserve(_OVERRIDES_HELP)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        return _check_env(env, "env")

    @field_validator("node_selector")
    @classmethod
    def _node_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "label", label_values=True)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        owned = sorted(set(value) & pod_fragment.OPERATOR_LABELS)
        if owned:
            raise ValueError(f"{owned[0]} is set by the operator (its selectors use it)")
        return _check_keys(value, "label", label_values=True)

    @field_validator("pod_overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        problems = pod_fragment.check(value, cls.CONTAINERS, RESERVED_ENV)
        if problems:
            raise pod_fragment.FragmentError(problems)
        return value


class LocalObjectReference(_Model):
    """An object in the PhloWorkflow's namespace, by name."""

    name: str = Field(description="Name of the object.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


class ServiceAccountSettings(_Model):
    """The ServiceAccount the operator generates for the Dagster pods and runs."""

    annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict,
        description="Annotations of the generated ServiceAccount, e.g. for workload identity "
        "(eks.amazonaws.com/role-arn, iam.gke.io/gcp-service-account, azure.workload.identity/client-id). "
        "Not with serviceAccountName: annotate an existing ServiceAccount yourself.",
    )

    @field_validator("annotations")
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "annotation")


class Workflows(_Model):
    """Where the Phlo workflow modules live inside the image."""

    path: str = Field(
        default=c.DEFAULT_IMAGE_WORKFLOWS_PATH,
        description="Directory inside the image scanned for workflow modules (WORKFLOWS_PATH); absolute.",
        min_length=1,
        pattern=ABSOLUTE_PATH,
    )


class Dbt(PodSettings):
    """The dbt project compiled by a Job before each code-server rollout. env, envFrom and resources apply
    to the compile wherever it runs (the Job, the code server's and run pods' init containers); scheduling,
    labels, podAnnotations, priorityClassName and podOverrides to the Job's pod."""

    CONTAINERS: ClassVar[frozenset[str]] = frozenset({"dbt-compile"})

    enabled: bool = Field(default=False, description="Compile the dbt project and load its models as assets.")
    project_dir: str = Field(
        default="/app/dbt",
        description="dbt project directory inside the image; absolute.",
        min_length=1,
        pattern=ABSOLUTE_PATH,
    )
    profiles_dir: str | None = Field(
        default=None,
        description="Directory holding profiles.yml inside the image (default: the project dir); absolute.",
        pattern=ABSOLUTE_PATH,
    )
    target: str | None = Field(
        default=None,
        description="dbt target name (default: the profile's default).",
        min_length=1,
        pattern=_TARGET,
    )
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra annotations on the dbt-compile Job's pod."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of the dbt compile (default: codeServer.resources)."
    )


class ReadOnlyWebserver(_Model):
    """A second webserver in Dagster's read-only mode (no launching, terminating or deleting runs, no
    schedule or sensor toggles), with its own Deployment and Service `<name>-webserver-ro`; it shares
    the webserver's settings (env, scheduling, resources, pathPrefix, podOverrides)."""

    enabled: bool = Field(default=False, description="Run the read-only webserver.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=INT32_MAX,
        description="Read-only webserver pods. Left alone when a HorizontalPodAutoscaler targets the "
        "Deployment.",
    )


class Webserver(PodSettings):
    """The Dagster webserver: UI, GraphQL API and Prometheus /metrics."""

    CONTAINERS: ClassVar[frozenset[str]] = frozenset({"webserver"})

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
    path_prefix: str | None = Field(
        default=None,
        description="Serve the UI and /graphql under this path (e.g. /dagster, for an Ingress that routes a "
        "path): starts with '/', does not end with one. The readiness probe and status.webserverUrl follow "
        "it; /metrics is also served at the root.",
        max_length=253,
        pattern=PATH_PREFIX,
    )
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra annotations on webserver pods."
    )
    read_only: ReadOnlyWebserver = Field(
        default_factory=ReadOnlyWebserver,
        description="A second, read-only webserver Deployment and Service (for wide audiences: expose it "
        "with your own Ingress, or behind spec.auth's proxy by pointing one at its Service). Not behind "
        "spec.auth's proxy itself, and not routed by spec.ingress or spec.httpRoute.",
    )


class Daemon(PodSettings):
    """The Dagster daemon (schedules, sensors, run queue); always exactly one pod."""

    CONTAINERS: ClassVar[frozenset[str]] = frozenset({"daemon"})

    resources: ResourceRequirements | None = Field(default=None, description="Daemon container resources.")
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra annotations on the daemon pod."
    )


class CodeServer(PodSettings):
    """The gRPC user-code server that loads the Phlo definitions."""

    image: str | None = Field(
        default=None,
        description="Image with the workflows and the dbt project, for the code server, its dbt compile "
        "and its runs (default: spec.image): [registry/]path[:tag][@digest]. A change rolls only the code "
        "server; the webserver and the daemon run spec.image and keep running.",
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
    )
    CONTAINERS: ClassVar[frozenset[str]] = frozenset({"code-server", "dbt-compile"})

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
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra annotations on code-server pods."
    )


# Bound on spec.codeLocations: each location carries CEL rules (its env, envFrom, tolerations, dbt), and the
# API server refuses a CRD whose estimated rule cost (rules x items) exceeds its budget.
CODE_LOCATIONS_MAX = 16


class CodeLocation(CodeServer):
    """One code location: its own code-server Deployment and Service, dbt-compile Job, NetworkPolicy, and an
    entry in the webserver's and the daemon's workspace.yaml. Its runs use its image. Settings it leaves out
    take the defaults below (not spec.codeServer's, spec.workflows' or spec.dbt's, which describe the single
    location of a spec without codeLocations); the image defaults to spec.codeServer.image, then spec.image.
    Changing a location rolls only its code server, gated on its own dbt compile, and reloads only it in the
    webserver."""

    name: str = Field(
        description="Location name (a DNS label): the webserver shows it, runs and schedules carry it. "
        "Location phlo keeps the object names of a spec without codeLocations (<name>-code-server); another "
        "gets <name>-code-<location> (shortened and hashed when long).",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL,
    )
    image: str | None = Field(
        default=None,
        description="Image with phlo-dagster, this location's workflows and dbt project, for its code "
        "server, its dbt compile and its runs (default: spec.codeServer.image, then spec.image): "
        "[registry/]path[:tag][@digest]. A change rolls only this location's code server.",
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None,
        description="Pull policy of this location's containers (code server, dbt compile; default: "
        "spec.imagePullPolicy).",
    )
    workflows: Workflows = Field(
        default_factory=Workflows, description="Workflow modules inside this location's image."
    )
    dbt: Dbt = Field(
        default_factory=Dbt, description="dbt project of this location, compiled before each of its rollouts."
    )


_SIZE = "1Gi"


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
                {
                    "rule": "!has(self.secretName) || !has(self.storageClassName)",
                    "message": "storageClassName is for the managed PostgreSQL's volume: "
                    "remove it with secretName",
                },
                {
                    "rule": "!has(self.secretName) || !has(self.storageSize)"
                    f" || self.storageSize == '{_SIZE}'",
                    "message": "storageSize is for the managed PostgreSQL's volume: remove it with secretName"
                    f" (or leave the default {_SIZE})",
                },
                {
                    "rule": "!has(self.secretName) || !has(self.deletionPolicy)"
                    " || self.deletionPolicy != 'Delete'",
                    "message": "deletionPolicy: Delete deletes the managed PostgreSQL's volume; "
                    "with secretName nothing would be deleted: remove it",
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
        default="postgres:17-alpine",
        description="Image of the managed PostgreSQL: [registry/]path[:tag][@digest].",
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
    )
    storage_size: str = Field(
        default=_SIZE,
        description="Size of the managed PostgreSQL volume (above zero).",
        json_schema_extra={"pattern": _POSITIVE_QUANTITY},
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
        if not re.fullmatch(_POSITIVE_QUANTITY, self.storage_size):
            raise ValueError(
                f"storage.postgres.storageSize: {self.storage_size!r} is not a Kubernetes quantity above zero"
            )
        if self.secret_name:
            for conflict, field in (
                (self.storage_class_name is not None, "storageClassName"),
                (self.storage_size != _SIZE, "storageSize"),
                (self.deletion_policy == "Delete", "deletionPolicy: Delete"),
            ):
                if conflict:
                    raise ValueError(
                        f"storage.postgres: {field} is for the managed PostgreSQL only: remove it"
                    )
        return self


class Storage(_Model):
    """Where Dagster keeps its state."""

    postgres: Postgres = Field(
        default_factory=Postgres, description="PostgreSQL storage: managed or an existing Secret."
    )


class Runs(PodSettings):
    """The pods of Dagster runs (one Job per run), rendered into the K8sRunLauncher's run_k8s_config. A run's
    `dagster-k8s/config` tag is merged on top by dagster-k8s (by default deep: maps merged, lists appended,
    values the tag sets replace these)."""

    # dagster-k8s names a run's container "dagster".
    CONTAINERS: ClassVar[frozenset[str]] = frozenset({"dagster"})

    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of each run's container (e.g. nvidia.com/gpu for GPU pools)."
    )
    pod_annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict, description="Extra annotations on run pods."
    )

    @field_validator("pod_overrides")
    @classmethod
    def _not_the_location_parts(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """With dbt, the code location adds the dbt-compile init container and the dbt-target volume to its
        run pods (dagster-k8s appends them): an override of either would be a second one."""
        spec = (value or {}).get("spec")
        if not isinstance(spec, dict):
            return value
        problems = []
        for field, owned in (
            ("containers", "dbt-compile"),
            ("initContainers", "dbt-compile"),
            ("volumes", "dbt-target"),
        ):
            for i, item in enumerate(spec.get(field) or []):
                if isinstance(item, dict) and item.get("name") == owned:
                    problems.append(
                        (
                            f"spec.{field}[{i}].name",
                            f"{owned} comes with the code location (set spec.dbt.env, envFrom or resources)",
                        )
                    )
        if problems:
            raise pod_fragment.FragmentError(problems)
        return value


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
    runs: Runs = Field(
        default_factory=Runs,
        description="Run pods: resources, scheduling, env, labels and podOverrides (over spec-level ones).",
    )


class TagConcurrencyLimit(_Model):
    """At most `limit` runs in progress among the runs with a tag (and value)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.value) || !has(self.applyLimitPerUniqueValue)"
                    " || !self.applyLimitPerUniqueValue",
                    "message": "set value or applyLimitPerUniqueValue, not both",
                }
            ]
        }
    )

    key: str = Field(description="Run tag key, e.g. dagster/backfill or team.", min_length=1, max_length=1024)
    value: str | None = Field(
        default=None,
        description="Tag value the limit applies to (default: every run with the key, all values together).",
        max_length=1024,
    )
    apply_limit_per_unique_value: bool | None = Field(
        default=None, description="Apply the limit to each value of the key separately (excludes value)."
    )
    limit: int = Field(ge=0, le=INT32_MAX, description="Runs with this tag that may be in progress at once.")

    @model_validator(mode="after")
    def _one_value(self) -> TagConcurrencyLimit:
        if self.value is not None and self.apply_limit_per_unique_value:
            raise ValueError("set value or applyLimitPerUniqueValue, not both")
        return self


class RunCoordinator(_Model):
    """The run queue (Dagster's QueuedRunCoordinator): how many runs may be in progress at once."""

    max_concurrent_runs: int | None = Field(
        default=None,
        ge=-1,
        le=INT32_MAX,
        description="Runs in progress at once; more wait in the queue (default: Dagster's 10). "
        "-1: no limit; 0: launch nothing.",
    )
    tag_concurrency_limits: list[TagConcurrencyLimit] = Field(
        default_factory=list,
        description="Limits for runs carrying a tag ({key, value, limit}); a run waits while one is reached.",
    )


class RunRetries(_Model):
    """Automatic re-execution of failed runs by the daemon (Dagster's run_retries)."""

    max_retries: int = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Times a failed run is retried (0: never); a run's dagster/max_retries tag overrides it.",
    )
    retry_on_asset_or_op_failure: bool = Field(
        default=True,
        description="Retry runs that failed because an asset or op failed; false retries only runs whose "
        "worker crashed or was stopped (op and asset retry policies handle the rest).",
    )


_DAYS = "Days ticks with status {} are kept (-1: forever)."


class TickRetention(_Model):
    """Days schedule or sensor ticks are kept, by tick status; unset statuses keep Dagster's default."""

    started: int | None = Field(default=None, ge=-1, le=INT32_MAX, description=_DAYS.format("started"))
    skipped: int | None = Field(default=None, ge=-1, le=INT32_MAX, description=_DAYS.format("skipped"))
    success: int | None = Field(default=None, ge=-1, le=INT32_MAX, description=_DAYS.format("success"))
    failure: int | None = Field(default=None, ge=-1, le=INT32_MAX, description=_DAYS.format("failure"))


class Retention(_Model):
    """How long the daemon keeps tick history (Dagster's retention); Dagster's default keeps every tick
    except skipped sensor ticks (7 days)."""

    schedule: TickRetention | None = Field(default=None, description="Schedule ticks.")
    sensor: TickRetention | None = Field(default=None, description="Sensor ticks.")
    auto_materialize: TickRetention | None = Field(
        default=None, description="Automation (declarative) ticks."
    )


class Pools(_Model):
    """Concurrency pools: limits on ops or assets that share a pool (Dagster's concurrency.pools)."""

    default_limit: int | None = Field(
        default=None,
        ge=0,
        le=max_concurrency_limit(),
        description="Slots of a pool that has no limit of its own (default: unlimited).",
    )
    granularity: Literal["run", "op"] | None = Field(
        default=None, description="Enforce pool limits per op (op) or per run (run); default: Dagster's."
    )


class Concurrency(_Model):
    """Concurrency limits beyond the run queue."""

    pools: Pools | None = Field(
        default=None,
        description="Pool limits. With pools set, the run queue's limits (runCoordinator) are written under "
        "dagster.yaml's concurrency.runs, as Dagster requires.",
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

    @model_validator(mode="after")
    def _monitor_needs_metrics(self) -> Metrics:
        if self.service_monitor.enabled and not self.enabled:
            raise ValueError("serviceMonitor.enabled needs metrics.enabled")
        return self


# A host name an Ingress or HTTPRoute matches: a DNS name in lower case, optionally a leading `*.` wildcard.
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Bound on httpRoute.parentRefs and hostnames (the Gateway API's own limits).
ROUTE_LIST_MAX = 16


class IngressTLS(_Model):
    """TLS termination at the ingress controller."""

    secret_name: str = Field(
        description="Secret (type kubernetes.io/tls) with the certificate for `host`, in the PhloWorkflow's "
        "namespace.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )


class IngressSettings(_Model):
    """A networking.k8s.io/v1 Ingress to the webserver Service (path: webserver.pathPrefix, or /)."""

    enabled: bool = Field(default=False, description="Create the Ingress.")
    class_name: str | None = Field(
        default=None,
        description="IngressClass that serves it (default: the cluster's default IngressClass).",
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    host: str | None = Field(
        default=None,
        description="Host name the rule matches, e.g. dagster.example.com (default: every host).",
        max_length=253,
        pattern=HOSTNAME,
    )
    tls: IngressTLS | None = Field(default=None, description="Terminate TLS for `host` with a Secret.")
    annotations: dict[str, AnnotationValue] = Field(
        default_factory=dict,
        description="Annotations of the Ingress, e.g. the controller's own settings (auth, timeouts, body "
        "size).",
    )

    @field_validator("annotations")
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "annotation")


class ParentReference(_Model):
    """A Gateway (or a listener of one) the HTTPRoute attaches to, as in the Gateway API's parentRefs."""

    group: str | None = Field(
        default=None,
        description="API group of the parent (default gateway.networking.k8s.io).",
        max_length=253,
        pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    kind: str | None = Field(
        default=None,
        description="Kind of the parent (default Gateway).",
        min_length=1,
        max_length=63,
        pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace of the parent (default: the PhloWorkflow's); the Gateway must allow routes "
        "from this namespace.",
        max_length=63,
        pattern=DNS_LABEL,
    )
    name: str = Field(description="Name of the parent.", min_length=1, max_length=253)
    section_name: str | None = Field(
        default=None,
        description="Listener of the Gateway to attach to (default: every listener that accepts it).",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="Listener port to attach to.")


_ROUTE_PARENTS_MESSAGE = "httpRoute.enabled needs at least one parentRefs entry (the Gateway to attach to)"
_ROUTE_SAME_PARENT_MESSAGE = (
    "httpRoute.parentRefs: entries naming the same parent must all set sectionName or all leave it out (port "
    "likewise) and differ in them, or the Gateway API refuses the HTTPRoute"
)
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# The same-parent rule is checked here, not in the CRD: as CEL over parentRefs pairs its estimated cost
# exceeded the API server's budget a hundredfold. A spec breaking it is Degraded with reason InvalidSpec.


class HTTPRouteSettings(_Model):
    """A gateway.networking.k8s.io/v1 HTTPRoute to the webserver Service (path: webserver.pathPrefix, or /),
    created only when the Gateway API is installed."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.enabled) || !self.enabled || (has(self.parentRefs)"
                    " && size(self.parentRefs) > 0)",
                    "message": _ROUTE_PARENTS_MESSAGE,
                }
            ]
        }
    )

    enabled: bool = Field(
        default=False,
        description="Create the HTTPRoute (only when the gateway.networking.k8s.io/v1 API exists; otherwise "
        "a Warning Event and status.exposure.httpRoute CRDMissing).",
    )
    parent_refs: list[ParentReference] = Field(
        default_factory=list,
        description="Gateways the route attaches to ({name, namespace, sectionName, port, group, kind}).",
        max_length=ROUTE_LIST_MAX,
    )
    hostnames: list[Annotated[str, Field(max_length=253, pattern=HOSTNAME)]] = Field(
        default_factory=list,
        description="Host names the route matches (default: every host the Gateway's listener accepts).",
        max_length=ROUTE_LIST_MAX,
    )

    @model_validator(mode="after")
    def _parents(self) -> HTTPRouteSettings:
        if self.enabled and not self.parent_refs:
            raise ValueError(_ROUTE_PARENTS_MESSAGE)
        if not self.enabled:
            return self
        by_parent: dict[tuple[str, str, str, str], list[ParentReference]] = {}
        for ref in self.parent_refs:
            group = GATEWAY_API_GROUP if ref.group is None else ref.group
            by_parent.setdefault((group, ref.kind or "Gateway", ref.namespace or "", ref.name), []).append(
                ref
            )
        for (_, _, namespace, name), refs in by_parent.items():
            alike = {(ref.section_name is not None, ref.port is not None) for ref in refs}
            listeners = [(ref.section_name, ref.port) for ref in refs]
            if len(alike) > 1 or len(set(listeners)) < len(listeners):
                parent = f"{namespace}/{name}" if namespace else name
                raise ValueError(f"{_ROUTE_SAME_PARENT_MESSAGE} (parent {parent})")
        return self


# oauth2-proxy, the authenticating proxy of spec.auth (pinned; spec.auth.image overrides it). The version
# tests/testbed/build.sh builds (OAUTH2_PROXY_VERSION): the real-node sign-in test runs this image.
OAUTH2_PROXY_IMAGE = "quay.io/oauth2-proxy/oauth2-proxy:v7.15.6"
DEFAULT_AUTH_PORT = 4180
# Keys of spec.auth.secretName, and the oauth2-proxy settings they become (as env, through secretKeyRef).
AUTH_SECRET_KEYS = {
    "client-id": "OAUTH2_PROXY_CLIENT_ID",
    "client-secret": "OAUTH2_PROXY_CLIENT_SECRET",
    "cookie-secret": "OAUTH2_PROXY_COOKIE_SECRET",
}
# Flags the operator sets on oauth2-proxy, and flags that would put a secret into the pod spec.
AUTH_OWNED_FLAGS = frozenset(
    {
        "--http-address",
        "--upstream",
        "--upstreams",
        "--provider",
        "--oidc-issuer-url",
        "--email-domain",
        "--proxy-prefix",
        "--ping-path",
        "--skip-auth-route",
        "--reverse-proxy",
        "--config",
    }
)
AUTH_SECRET_FLAGS = frozenset({"--client-id", "--client-secret", "--cookie-secret", "--client-secret-file"})
AUTH_LIST_MAX = 32
_AUTH_NEEDS = (
    "auth.enabled needs secretName and at least one emailDomains entry "
    "('*': any account the provider signs in)"
)
_AUTH_OIDC = "auth.provider oidc needs issuerUrl"


class Auth(_Model):
    """An authenticating proxy (oauth2-proxy) in front of the webserver, as a sidecar in its pod: the
    Service's http and metrics ports, the Ingress and the HTTPRoute reach the proxy, which passes signed-in
    requests to the webserver (GET /metrics passes without sign-in, for Prometheus)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.enabled) || !self.enabled || (has(self.secretName)"
                    " && has(self.emailDomains) && size(self.emailDomains) > 0)",
                    "message": _AUTH_NEEDS,
                },
                {
                    "rule": "!has(self.enabled) || !self.enabled"
                    " || (has(self.provider) && self.provider != 'oidc') || has(self.issuerUrl)",
                    "message": _AUTH_OIDC,
                },
            ]
        }
    )

    enabled: bool = Field(default=False, description="Run the proxy in front of the webserver.")
    image: str = Field(
        default=OAUTH2_PROXY_IMAGE,
        description="oauth2-proxy image: [registry/]path[:tag][@digest].",
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
    )
    secret_name: str | None = Field(
        default=None,
        description="Secret in the PhloWorkflow's namespace with keys client-id, client-secret and "
        "cookie-secret (16, 24 or 32 bytes, e.g. `openssl rand -base64 32 | head -c 32`); read through "
        "secretKeyRef, never copied into the pod spec. A change of its content rolls the webserver.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    provider: str = Field(
        default="oidc",
        description="oauth2-proxy provider: oidc (default; any OpenID Connect issuer), github, gitlab, "
        "google, azure, keycloak-oidc, ...",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z][a-z0-9-]*$",
    )
    issuer_url: str | None = Field(
        default=None,
        description="OpenID Connect issuer URL (provider oidc), e.g. https://login.example.com/realms/data.",
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
    )
    email_domains: list[Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s]+$")]] = Field(
        default_factory=list,
        description="E-mail domains allowed in ('*': any account the provider signs in). Required.",
        max_length=AUTH_LIST_MAX,
    )
    extra_args: list[
        Annotated[str, Field(min_length=3, max_length=4096, pattern=r"^--[a-z0-9-]+(=.*)?$")]
    ] = Field(
        default_factory=list,
        description="More oauth2-proxy flags (--flag=value), e.g. --allowed-group=data, "
        "--cookie-expire=8h. Flags the operator sets and flags carrying secrets (--client-secret, "
        "--cookie-secret) are refused.",
        max_length=AUTH_LIST_MAX,
    )
    port: int = Field(
        default=DEFAULT_AUTH_PORT,
        ge=1,
        le=65535,
        description="Port the proxy listens on, and the webserver Service's port `direct` (the webserver "
        "without the proxy, admitted only from the operator by a NetworkPolicy). Must differ from "
        "webserver.port and metrics.port.",
    )
    resources: ResourceRequirements | None = Field(default=None, description="Proxy container resources.")

    @field_validator("extra_args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in AUTH_SECRET_FLAGS:
                raise ValueError(
                    f"{flag} would put a secret into the pod spec: put it in the secretName Secret"
                )
            if flag in AUTH_OWNED_FLAGS:
                raise ValueError(f"{flag} is set by the operator (from spec.auth and spec.webserver)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.enabled and (not self.secret_name or not self.email_domains):
            raise ValueError(_AUTH_NEEDS)
        if self.enabled and self.provider == "oidc" and not self.issuer_url:
            raise ValueError(_AUTH_OIDC)
        return self


# Keys of spec.computeLogs.s3.secretName and the env the AWS SDK reads them from (through secretKeyRef).
S3_SECRET_KEYS = {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"}


class S3ComputeLogs(_Model):
    """Dagster's S3 compute log manager (dagster-aws): each step's stdout and stderr are uploaded to S3 or an
    S3-compatible server, where the UI reads them, also for runs whose pod is gone."""

    bucket: str = Field(
        description="Bucket name.", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"
    )
    prefix: str = Field(
        default="dagster",
        description="Key prefix of the log objects.",
        min_length=1,
        max_length=512,
        pattern=r"^[^\x00-\x1f\x7f]+$",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (e.g. http://minio.storage:9000); default: AWS S3.",
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
    )
    region: str | None = Field(
        default=None,
        description="Region of the bucket (default: the SDK's, e.g. AWS_REGION).",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9-]+$",
    )
    secret_name: str | None = Field(
        default=None,
        description="Secret with keys access-key-id and secret-access-key, set as AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (secretKeyRef) on the webserver, daemon, code servers and run pods (with "
        "another runLauncher.namespace it must exist there too). Without it the SDK's other sources apply, "
        "e.g. workload identity through serviceAccount.annotations.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )


class ComputeLogs(_Model):
    """Where run steps' stdout and stderr go (default: local files in the run pod, which the UI cannot read
    once the pod is gone)."""

    s3: S3ComputeLogs | None = Field(default=None, description="Upload them to S3 (dagster-aws).")


_SA_ANNOTATIONS_MESSAGE = (
    "serviceAccount.annotations are for the generated ServiceAccount: with serviceAccountName, "
    "annotate that ServiceAccount instead"
)


class PhloWorkflowSpec(_Model):
    """Desired state of a Dagster deployment running Phlo workflows."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.metrics) || !has(self.metrics.port) || !has(self.webserver)"
                    " || !has(self.webserver.port) || self.metrics.port != self.webserver.port"
                    " || (has(self.metrics.enabled) && !self.metrics.enabled)",
                    "message": "metrics.port must differ from webserver.port (both are ports of one Service)",
                },
                {
                    "rule": "!has(self.serviceAccountName) || !has(self.serviceAccount)"
                    " || !has(self.serviceAccount.annotations) || size(self.serviceAccount.annotations) == 0",
                    "message": _SA_ANNOTATIONS_MESSAGE,
                },
            ]
        }
    )

    image: str = Field(
        description="Image with phlo-dagster, the workflows and the dbt project: "
        "[registry/]path[:tag][@digest].",
        min_length=1,
        max_length=1024,
        pattern=IMAGE_REFERENCE,
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of every Dagster container."
    )
    workflows: Workflows = Field(default_factory=Workflows, description="Workflow modules inside the image.")
    dbt: Dbt = Field(default_factory=Dbt, description="dbt project compiled before each code-server rollout.")
    webserver: Webserver = Field(default_factory=Webserver, description="The Dagster webserver.")
    daemon: Daemon = Field(default_factory=Daemon, description="The Dagster daemon (one pod).")
    code_server: CodeServer = Field(
        default_factory=CodeServer,
        description="The gRPC code server of the single location phlo (without codeLocations); with "
        "codeLocations only its image applies (their default image).",
    )
    code_locations: list[CodeLocation] = Field(
        default_factory=list,
        description="Code locations, each with its own image, code server, dbt compile and release cadence, "
        "behind one webserver and one daemon. Absent: one location named phlo from spec.image "
        "(spec.codeServer.image), spec.workflows, spec.dbt and spec.codeServer. Names are unique.",
        max_length=CODE_LOCATIONS_MAX,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
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
    service_account: ServiceAccountSettings = Field(
        default_factory=ServiceAccountSettings,
        description="Settings of the ServiceAccount the operator generates (without serviceAccountName).",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description="Secrets (type kubernetes.io/dockerconfigjson) to pull images from private registries, "
        "in the PhloWorkflow's namespace; set on every pod: webserver, daemon, code server, "
        "dbt-compile Jobs, managed PostgreSQL and run pods (with another runLauncher.namespace they must "
        "exist there too).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    metrics: Metrics = Field(default_factory=Metrics, description="Prometheus metrics.")
    ingress: IngressSettings = Field(
        default_factory=IngressSettings,
        description="An Ingress to the webserver (UI and /graphql). See docs/production.md: without "
        "auth the UI is open to whoever reaches it.",
    )
    http_route: HTTPRouteSettings = Field(
        default_factory=HTTPRouteSettings,
        description="A Gateway API HTTPRoute to the webserver (UI and /graphql).",
    )
    compute_logs: ComputeLogs | None = Field(
        default=None,
        description="Run logs (stdout, stderr) in storage the UI reads: S3 or an S3-compatible server.",
    )
    auth: Auth = Field(
        default_factory=Auth,
        description="An authenticating proxy (oauth2-proxy) in front of the webserver, so the UI is not open "
        "once exposed.",
    )
    run_coordinator: RunCoordinator = Field(
        default_factory=RunCoordinator, description="The run queue: runs in progress at once, tag limits."
    )
    run_retries: RunRetries | None = Field(default=None, description="Retry failed runs automatically.")
    retention: Retention | None = Field(default=None, description="Days schedule and sensor ticks are kept.")
    concurrency: Concurrency | None = Field(default=None, description="Concurrency pools.")
    instance_config: dict[str, Any] | None = _preserve(
        "More dagster.yaml settings, merged over what the operator renders as a JSON merge patch (RFC 7386: "
        "objects merge key by key, a null removes a key, anything else replaces). The result is checked "
        "against Dagster's instance schema (of the Dagster version of this release's runtime image) before "
        "anything rolls; a refused merge names the key."
    )
    suspend: bool = Field(
        default=False, description="Scale every Dagster Deployment to 0; storage and data are kept."
    )

    def referenced_objects(self) -> set[tuple[str, str]]:
        """(kind, name) of every ConfigMap and Secret the webserver, daemon and code-server pods read env
        from: env valueFrom and envFrom (spec-level, each component's and location's), the secretName storage
        Secret."""
        found: set[tuple[str, str]] = set()
        components = (self.webserver, self.daemon, self.code_server, *self.code_locations)
        for var in [*self.env, *(v for part in components for v in part.env)]:
            source = var.value_from
            if source is not None and source.secret_key_ref is not None:
                found.add(("Secret", source.secret_key_ref.name))
            if source is not None and source.config_map_key_ref is not None:
                found.add(("ConfigMap", source.config_map_key_ref.name))
        for env_from in [*self.env_from, *(e for part in components for e in part.env_from)]:
            if env_from.secret_ref is not None:
                found.add(("Secret", env_from.secret_ref.name))
            if env_from.config_map_ref is not None:
                found.add(("ConfigMap", env_from.config_map_ref.name))
        if self.storage.postgres.secret_name:
            found.add(("Secret", self.storage.postgres.secret_name))
        if self.s3_logs is not None and self.s3_logs.secret_name:
            found.add(("Secret", self.s3_logs.secret_name))
        if self.auth.enabled and self.auth.secret_name:
            found.add(("Secret", self.auth.secret_name))
        return found

    @field_validator("code_locations")
    @classmethod
    def _distinct_locations(cls, value: list[CodeLocation]) -> list[CodeLocation]:
        seen: dict[str, tuple[int, str]] = {}
        for i, location in enumerate(value):
            suffix = names.location_suffix(location.name)
            if suffix in seen:
                j, first = seen[suffix]
                if first == location.name:
                    raise ValueError(f"{location.name} appears twice (items {j} and {i}): names are unique")
                raise ValueError(
                    f"{location.name} (item {i}) would name its objects like {first} (item {j}): {suffix}; "
                    "rename one"
                )
            seen[suffix] = (i, location.name)
        return value

    @model_validator(mode="after")
    def _one_place_for_location_settings(self) -> PhloWorkflowSpec:
        """With codeLocations, spec.workflows, spec.dbt and codeServer's settings would apply to nothing."""
        if not self.code_locations:
            return self
        for field, differs, fix in (
            ("workflows", self.workflows != Workflows(), "spec.codeLocations[].workflows"),
            ("dbt", self.dbt != Dbt(), "spec.codeLocations[].dbt"),
            (
                "codeServer settings other than image",
                self.code_server.model_copy(update={"image": None}) != CodeServer(),
                "the settings of spec.codeLocations[]",
            ),
        ):
            if differs:
                raise ValueError(
                    f"{field} are for the single location of a spec without codeLocations: use {fix}"
                    if field.startswith("codeServer")
                    else f"{field} is for the single location of a spec without codeLocations: use {fix}"
                )
        return self

    @model_validator(mode="after")
    def _distinct_service_ports(self) -> PhloWorkflowSpec:
        if self.metrics.enabled and self.metrics.port == self.webserver.port:
            raise ValueError("metrics.port must differ from webserver.port (both are ports of one Service)")
        return self

    @property
    def s3_logs(self) -> S3ComputeLogs | None:
        return self.compute_logs.s3 if self.compute_logs is not None else None

    @model_validator(mode="after")
    def _s3_credentials_once(self) -> PhloWorkflowSpec:
        s3 = self.s3_logs
        if s3 is None or not s3.secret_name:
            return self
        parts = [
            ("spec.env", self.env),
            *((f"spec.{f}.env", getattr(self, f).env) for f in ("webserver", "daemon")),
        ]
        parts.append(("spec.codeServer.env", self.code_server.env))
        parts.append(("spec.runLauncher.runs.env", self.run_launcher.runs.env))
        for where, env in parts:
            for var in env:
                if var.name in S3_SECRET_KEYS.values():
                    raise ValueError(
                        f"{where}: {var.name} is set from computeLogs.s3.secretName; remove one of them"
                    )
        return self

    @model_validator(mode="after")
    def _auth_port(self) -> PhloWorkflowSpec:
        if not self.auth.enabled:
            return self
        taken = {self.webserver.port: "webserver.port"}
        if self.metrics.enabled:
            taken[self.metrics.port] = "metrics.port"
        if self.auth.port in taken:
            raise ValueError(
                f"auth.port must differ from {taken[self.auth.port]} (both are ports of the webserver)"
            )
        return self

    @model_validator(mode="after")
    def _annotations_need_generated_account(self) -> PhloWorkflowSpec:
        if self.service_account_name and self.service_account.annotations:
            raise ValueError(_SA_ANNOTATIONS_MESSAGE)
        return self

    @field_validator("image_pull_secrets")
    @classmethod
    def _distinct_pull_secrets(cls, value: list[LocalObjectReference]) -> list[LocalObjectReference]:
        names = [ref.name for ref in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"imagePullSecrets: {name} appears twice")
        return value

    @field_validator("node_selector")
    @classmethod
    def _node_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_keys(value, "label", label_values=True)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        return _check_env(env, "spec.env")


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
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, pod_fragment.FragmentError):
            # A podOverrides problem: the path goes on inside the fragment.
            lines += [f"{path}{'.' if inner else ''}{inner}: {msg}" for inner, msg in error.problems]
            continue
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    return "; ".join(lines)
