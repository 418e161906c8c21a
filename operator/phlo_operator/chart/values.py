"""Typed model of the chart's values: the one source of values.schema.json, values.yaml and the docs table."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# Ports of the operator process; the Deployment passes them as --metrics-port / --health-port.
DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTH_PORT = 8081

# A Kubernetes namespace name (RFC 1123 label).
NamespaceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class StrictModel(BaseModel):
    """Rejects unknown keys, so a misspelled value fails `helm install` instead of being ignored."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, validate_default=True
    )


class Image(StrictModel):
    repository: str = Field(
        default="phlo-dagster-operator",
        min_length=1,
        description="Operator image repository (built from operator/Dockerfile).",
    )
    tag: str = Field(default="", description="Image tag; empty means the chart's appVersion.")
    digest: str = Field(
        default="",
        pattern=r"^(sha256:[a-f0-9]{64})?$",
        description="Image digest (sha256:...); when set it pins the image and wins over the tag.",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Image pull policy of the operator container."
    )


class LocalObjectReference(StrictModel):
    name: str = Field(min_length=1, description="Name of the Secret.")


class Watch(StrictModel):
    all_namespaces: bool = Field(
        default=False,
        description=(
            "Cluster-wide mode: watch PhloWorkflows in every namespace (--all-namespaces) with a "
            "ClusterRole. Off by default: the operator then gets a Role only in the watched namespaces."
        ),
    )
    namespaces: list[NamespaceName] = Field(
        default_factory=list,
        description=(
            "Namespaces to watch in namespaced mode (one --namespace flag and one Role each); "
            "empty means the release namespace. The namespaces must exist. Ignored with allNamespaces."
        ),
    )


class ServiceAccount(StrictModel):
    create: bool = Field(default=True, description="Create the operator's ServiceAccount.")
    name: str = Field(default="", description="ServiceAccount name; empty means the release's full name.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations on the ServiceAccount (e.g. cloud workload identity)."
    )


class Rbac(StrictModel):
    create: bool = Field(
        default=True,
        description=(
            "Create the Role/RoleBinding (or ClusterRole/ClusterRoleBinding in cluster-wide mode) generated "
            "from the operator's own rule list (phlo_operator.rbac)."
        ),
    )
    run_namespaces: list[NamespaceName] = Field(
        default_factory=list,
        description=(
            "Namespaced mode: namespaces outside the watched ones where workflows launch runs "
            "(spec.runLauncher.namespace). The operator gets its Role there too (to set up the run "
            "launcher's Role and config) without watching them. The namespaces must exist."
        ),
    )


class Crd(StrictModel):
    install: bool = Field(
        default=True,
        description=(
            "Install the PhloWorkflow CRD as a chart template, so `helm upgrade` updates it. "
            "It carries helm.sh/resource-policy: keep, so `helm uninstall` never deletes workflows."
        ),
    )


class Peering(StrictModel):
    enabled: bool = Field(
        default=True,
        description=(
            "Create the kopf peering object(s) (named after the operator's fixed peering name) so that of "
            "several operator replicas exactly one acts; off passes --standalone. Their CRDs come from the "
            "chart's crds/ folder (skip with --skip-crds when another kopf operator installed them)."
        ),
    )


class ResourceList(StrictModel):
    cpu: str = Field(default="", description="CPU quantity (e.g. 100m); empty means unset.")
    memory: str = Field(default="", description="Memory quantity (e.g. 256Mi); empty means unset.")


class Resources(StrictModel):
    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="50m", memory="128Mi"),
        description="Resource requests of the operator container.",
    )
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(memory="256Mi"),
        description="Resource limits of the operator container (no CPU limit by default: no throttling).",
    )


class Toleration(StrictModel):
    key: str = Field(default="", description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str = Field(default="", description="Taint value to match with Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="", description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="Seconds a NoExecute taint is tolerated; null means forever."
    )


class ServiceMonitor(StrictModel):
    enabled: bool = Field(
        default=False,
        description="Create a ServiceMonitor (needs the Prometheus Operator's CRDs) for the operator.",
    )
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    scrape_timeout: str = Field(default="10s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape timeout.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels, e.g. the `release` label your Prometheus selects ServiceMonitors by.",
    )


class Metrics(StrictModel):
    port: int = Field(
        default=DEFAULT_METRICS_PORT,
        ge=1024,
        le=65535,
        description="Port of the operator's Prometheus /metrics.",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the metrics Service."
    )
    service_monitor: ServiceMonitor = Field(
        default_factory=ServiceMonitor, description="ServiceMonitor for the operator's metrics."
    )


class Health(StrictModel):
    port: int = Field(
        default=DEFAULT_HEALTH_PORT,
        ge=1024,
        le=65535,
        description="Port of the operator's health endpoint (liveness and readiness probes).",
    )


_DURATION = r"^[0-9]+(s|m|h|d)$"


class AlertThresholds(StrictModel):
    operator_down_for: str = Field(
        default="5m", pattern=_DURATION, description="How long the operator target must be down to alert."
    )
    degraded_for: str = Field(
        default="10m", pattern=_DURATION, description="How long a workflow must be Degraded to alert."
    )
    webserver_down_for: str = Field(
        default="5m",
        pattern=_DURATION,
        description="How long a webserver target must be down or gone to alert (DagsterWebserverDown).",
    )
    webserver_absent_lookback: str = Field(
        default="1d",
        pattern=_DURATION,
        description=(
            "A webserver target seen within this window and gone now counts as down while the operator still "
            "manages its workflow (phlo_operator_workflow_webserver); a target gone for longer is forgotten."
        ),
    )
    daemon_down_for: str = Field(
        default="2m",
        pattern=_DURATION,
        description="How long the daemon must be silent or stale to alert (DagsterDaemonDown).",
    )
    daemon_heartbeat_max_age_seconds: int = Field(
        default=300,
        ge=90,
        description="A daemon whose last heartbeat is older than this is down (daemons beat every 30 s).",
    )
    run_failed_window: str = Field(
        default="1h",
        pattern=_DURATION,
        description="DagsterRunFailed fires for this long after a failed run of a job.",
    )
    run_queue_max_age_seconds: int = Field(
        default=900,
        ge=60,
        description="DagsterRunQueueStuck fires when the oldest queued run is older than this.",
    )
    asset_stale_for: str = Field(
        default="5m",
        pattern=_DURATION,
        description="How long an asset must be in freshness state fail to alert (DagsterAssetStale).",
    )
    check_failed_window: str = Field(
        default="1h",
        pattern=_DURATION,
        description="DagsterBlockingCheckFailed fires for this long after a blocking ERROR check failed.",
    )
    code_location_error_for: str = Field(
        default="5m",
        pattern=_DURATION,
        description="How long a code location must fail to load to alert (DagsterCodeLocationError).",
    )


class PrometheusRule(StrictModel):
    enabled: bool = Field(
        default=False,
        description="Create a PrometheusRule (needs the Prometheus Operator's CRDs) with the alerts.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels, e.g. the label your Prometheus selects rules by."
    )
    severity: str = Field(
        default="warning", min_length=1, description="`severity` label of non-critical alerts."
    )
    webserver_job: str = Field(
        default=".+-webserver",
        min_length=1,
        description=(
            "Regular expression matching the `job` label of the Dagster webservers' targets; the operator's "
            "ServiceMonitors name them after the webserver Service, `<workflow>-webserver`."
        ),
    )
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds, description="Alert thresholds.")


class GrafanaDashboard(StrictModel):
    enabled: bool = Field(
        default=True,
        description=(
            "Create a ConfigMap holding the Grafana dashboard (Dagster + operator metrics), labelled for "
            "Grafana's dashboard sidecar."
        ),
    )
    namespace: str = Field(
        default="", description="Namespace of the dashboard ConfigMap; empty means the release namespace."
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels the Grafana sidecar selects dashboard ConfigMaps by.",
    )


class ExampleWorkflow(StrictModel):
    enabled: bool = Field(
        default=False,
        description=(
            "Create an example PhloWorkflow in the release namespace once, at install (a post-install hook, "
            "because its CRD is part of the same release): upgrades do not change it and `helm uninstall` "
            "does not delete it."
        ),
    )
    name: str = Field(
        default="quickstart",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=40,
        description="Name of the example PhloWorkflow.",
    )
    spec: dict[str, Any] = Field(
        default_factory=lambda: {
            "image": "phlo-dagster:0.4.0",
            "dbt": {"enabled": True},
            "storage": {"postgres": {"managed": True}},
        },
        description="Spec of the example PhloWorkflow; validated by the CRD when it is applied.",
    )


class ChartTests(StrictModel):
    enabled: bool = Field(
        default=True, description="Render the `helm test` Job that checks the operator serves its metrics."
    )


class ChartValues(StrictModel):
    """Values of charts/phlo-dagster; `helm install` rejects any key not declared here."""

    name_override: str = Field(default="", description="Replaces the chart name in object names.")
    fullname_override: str = Field(
        default="", description="Replaces the release-derived full name of objects."
    )
    image: Image = Field(default_factory=Image, description="Operator image.")
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets for pulling the operator image."
    )
    replica_count: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Operator replicas; with peering enabled only one acts, the others stand by.",
    )
    watch: Watch = Field(default_factory=Watch, description="Which namespaces the operator watches.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Operator log level (--log-level)."
    )
    service_account: ServiceAccount = Field(
        default_factory=ServiceAccount, description="The operator's ServiceAccount."
    )
    rbac: Rbac = Field(default_factory=Rbac, description="RBAC for the operator.")
    crd: Crd = Field(default_factory=Crd, description="The PhloWorkflow CRD.")
    peering: Peering = Field(default_factory=Peering, description="kopf peering (one active replica).")
    resources: Resources = Field(default_factory=Resources, description="Operator container resources.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the pod.")
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the pod.")
    priority_class_name: str = Field(default="", description="PriorityClass of the operator pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector of the pod.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations of the pod.")
    affinity: dict[str, Any] = Field(
        default_factory=dict,
        description="Affinity of the pod (a Kubernetes Affinity object, validated by the API server).",
    )
    metrics: Metrics = Field(default_factory=Metrics, description="Operator metrics endpoint.")
    health: Health = Field(default_factory=Health, description="Operator health endpoint.")
    prometheus_rule: PrometheusRule = Field(
        default_factory=PrometheusRule, description="Alerts for the operator, workflows and Dagster."
    )
    grafana_dashboard: GrafanaDashboard = Field(
        default_factory=GrafanaDashboard, description="Grafana dashboard ConfigMap."
    )
    example_workflow: ExampleWorkflow = Field(
        default_factory=ExampleWorkflow, description="Optional example PhloWorkflow."
    )
    tests: ChartTests = Field(default_factory=ChartTests, description="`helm test` hook.")
    global_: dict[str, Any] = Field(
        default_factory=dict,
        alias="global",
        description="Helm's global values, passed in when this chart is a dependency of another; unused.",
    )
