"""Typed shape of PhloWorkflow.status; documents it in the CRD (kubectl explain)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phlo_operator import vocabulary as v


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_Model):
    """A metav1.Condition."""

    type: str = Field(description=f"Condition type: one of {_one_of(v.CONDITIONS)}.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        description=f"CamelCase reason for the last transition: one of {_one_of(v.REASONS)}; or, for "
        "DbtCompiled, the failed Job's own reason."
    )
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this was computed for."
    )


class DbtStatus(_Model):
    """Outcome of the dbt-compile Job."""

    spec_hash: str | None = Field(
        default=None, description="Hash of the inputs of the last successful compile."
    )
    last_success_time: str | None = Field(
        default=None, description="Completion time of that compile (RFC 3339)."
    )
    job_name: str | None = Field(default=None, description="The dbt-compile Job for the current inputs.")


class CodeServerStatus(_Model):
    """Code-server rollout bookkeeping."""

    template_hash: str | None = Field(
        default=None, description="Hash of the code-server pod template rolled out."
    )
    reloaded_hash: str | None = Field(
        default=None,
        description="Template hash for which the webserver was asked to reload the code location.",
    )


class CodeLocationStatus(_Model):
    """One code location as observed."""

    name: str = Field(description="Location name (spec.codeLocations[].name; phlo without codeLocations).")
    image: str | None = Field(default=None, description="Image of its code server, dbt compile and runs.")
    template_hash: str | None = Field(
        default=None, description="Hash of its code-server pod template rolled out (applied)."
    )
    reloaded_hash: str | None = Field(
        default=None, description="Template hash for which the webserver was asked to reload this location."
    )
    ready_replicas: int = Field(default=0, description="Ready pods of its code-server Deployment.")
    loaded: bool | None = Field(
        default=None,
        description="Whether the webserver has loaded this location from its current code server (absent: "
        "not checked, e.g. with the code-location check off).",
    )
    message: str | None = Field(default=None, description="What the webserver says of it, when checked.")
    dbt: DbtStatus | None = Field(default=None, description="Its dbt compile (phlo's is also status.dbt).")


class RunLauncherStatus(_Model):
    """Where run Jobs are launched."""

    namespace: str | None = Field(
        default=None,
        description="Namespace of run Jobs last reconciled; when runLauncher.namespace changes, what the "
        "operator kept in the old one is deleted.",
    )


class MetricsStatus(_Model):
    """Whether the ServiceMonitor asked for exists."""

    service_monitor: Literal["Disabled", "Applied", "CRDMissing"] | None = Field(
        default=None,
        description="Disabled (not asked for), Applied, or CRDMissing (asked for, but the "
        "monitoring.coreos.com/v1 API is not installed; rechecked every minute).",
    )


class ExposureStatus(_Model):
    """How the webserver is exposed outside the cluster."""

    http_route: Literal["Disabled", "Applied", "CRDMissing"] | None = Field(
        default=None,
        description="Disabled (not asked for), Applied, or CRDMissing (asked for, but the "
        "gateway.networking.k8s.io/v1 API is not installed; rechecked every minute).",
    )
    unauthenticated: bool | None = Field(
        default=None,
        description="True while an Ingress or HTTPRoute exposes the UI without spec.auth in front of it "
        "(a Warning Event ExposedWithoutAuthentication says so when it turns true).",
    )


class InstanceStatus(_Model):
    """The Dagster instance: which image the webserver and daemon run, its Dagster version and schema."""

    image: str | None = Field(
        default=None,
        description="The image the webserver and daemon run. A new spec.image replaces it only once its "
        "Dagster version is read and, when that version changed, the database is migrated.",
    )
    dagster_version: str | None = Field(
        default=None, description="Dagster version in that image (read by the dagster-version gate Job)."
    )
    schema_head: str | None = Field(
        default=None, description="The alembic revision that Dagster version expects (its storage's head)."
    )
    schema_version: str | None = Field(
        default=None,
        description="The alembic revision the instance database is at, read after the last migration "
        "(absent until one ran: a new database is created at the head revision).",
    )
    migrated_from: str | None = Field(
        default=None, description="The Dagster version the last migration started from."
    )
    migrate_job: str | None = Field(default=None, description="The migrate Job of the last version change.")


class PhloWorkflowStatus(_Model):
    """Observed state, computed from the children."""

    observed_generation: int | None = Field(default=None, description="Last metadata.generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded and one per component.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    webserver_url: str | None = Field(default=None, description="In-cluster URL of the Dagster webserver.")
    dbt: DbtStatus | None = Field(default=None, description="dbt compile outcome.")
    code_server: CodeServerStatus | None = Field(default=None, description="Code-server rollout bookkeeping.")
    code_locations: list[CodeLocationStatus] = Field(
        default_factory=list,
        description="Each code location: image, template hash, ready replicas, loaded by the webserver.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    instance: InstanceStatus | None = Field(
        default=None,
        description="The Dagster instance: the image and Dagster version the webserver and daemon run, and "
        "the database's schema revision (upgrades run `dagster instance migrate` first).",
    )
    run_launcher: RunLauncherStatus | None = Field(default=None, description="Where run Jobs are launched.")
    metrics: MetricsStatus | None = Field(default=None, description="Metrics objects the operator manages.")
    exposure: ExposureStatus | None = Field(
        default=None, description="Ingress and HTTPRoute of the webserver, and whether auth guards them."
    )
