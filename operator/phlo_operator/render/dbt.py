"""The dbt-compile Job, named by a hash of everything that affects the compile, so it runs once per input."""

from __future__ import annotations

from typing import Any

from phlo_operator.render import pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import DBT_HASH_ANNOTATION, Location, Workflow, digest
from phlo_operator.vocabulary import DBT_COMPILE

COMPONENT = DBT_COMPILE


def spec_hash(wf: Workflow, loc: Location | None = None) -> str | None:
    """Hash of a location's image, dbt settings and env (default: the first location); None when its dbt is
    disabled."""
    loc = loc or wf.locations[0]
    if not loc.dbt.enabled:
        return None
    dbt = loc.dbt.model_dump(by_alias=True, include={"enabled", "project_dir", "profiles_dir", "target"})
    inputs: list[Any] = [loc.image, dbt, loc.workflows.path, pods.user_env(wf), pods.user_env_from(wf)]
    # What may change the compile (a Job's template cannot change: new inputs, a new Job). Only when set, so
    # the hash of a spec without them stays what it was.
    extra = {
        "env": [v.model_dump(by_alias=True, exclude_none=True) for v in loc.dbt.env],
        "envFrom": [v.model_dump(by_alias=True, exclude_none=True) for v in loc.dbt.env_from],
        "podOverrides": loc.dbt.pod_overrides,
        # Another location's compile (its PHLO_CODE_LOCATION_NAME) is another Job, whatever its inputs.
        "location": None if loc.is_default else loc.name,
    }
    if any(extra.values()):
        inputs.append({k: v for k, v in extra.items() if v})
    return digest(inputs, length=10)


def hash_of(job: dict[str, Any]) -> str:
    """The input hash a compile Job carries (the reconciler reads it from the Job, not recomputes it)."""
    return str(job["metadata"]["annotations"][DBT_HASH_ANNOTATION])


def dbt_env(wf: Workflow, loc: Location | None = None) -> list[dict[str, Any]]:
    """The compile needs no storage credentials: runtime settings, user env, a log path."""
    loc = loc or wf.locations[0]
    base = [
        *pods.runtime_env(wf, loc),
        *pods.user_env(wf),
        {"name": "DBT_LOG_PATH", "value": "/tmp/dbt-logs"},
    ]
    return pods.component_env(base, loc.dbt)


def dbt_init_container(wf: Workflow, loc: Location | None = None) -> dict[str, Any]:
    """`phlo dbt compile` into the target emptyDir: the init container of code-server and run pods."""
    loc = loc or wf.locations[0]
    return pods.container(
        wf,
        "dbt-compile",
        ["phlo", "dbt", "compile"],
        dbt_env(wf, loc),
        loc.dbt,
        image=loc.image,
        pull_policy=loc.image_pull_policy,
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}, pods.dbt_target_mount()],
        resources=pods.resources(loc.dbt.resources or loc.server.resources),
    )


def job_name(wf: Workflow, hash_: str) -> str:
    return wf.child(f"dbt-{hash_}")


def job(wf: Workflow, shared: Shared, loc: Location | None = None) -> dict[str, Any] | None:
    """`phlo dbt compile` with the same image, env and paths as the location's code-server init container."""
    loc = loc or wf.locations[0]
    parts = shared.locations[loc.name]
    hash_, main = parts.dbt_hash, parts.dbt_init
    if hash_ is None or main is None:
        return None
    pod = pods.pod_spec(
        wf,
        [main],
        [{"name": "tmp", "emptyDir": {}}, pods.dbt_target_volume()],
        loc.dbt,
        restartPolicy="Never",
    )
    labels = {**pods.labels(wf, COMPONENT, loc.dbt), **loc.extra_labels}
    meta = wf.metadata("x", COMPONENT)
    meta["name"] = job_name(wf, hash_)
    meta["labels"] = labels
    meta["annotations"] = {DBT_HASH_ANNOTATION: hash_}
    template = {
        "metadata": {
            "labels": dict(labels),
            "annotations": {**loc.dbt.pod_annotations, DBT_HASH_ANNOTATION: hash_},
        },
        "spec": pod,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            # A compile is deterministic: retrying the same inputs would fail the same way.
            "backoffLimit": 0,
            "template": pods.with_overrides(template, loc.dbt, loc.dbt_field),
        },
    }
