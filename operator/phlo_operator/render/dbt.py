"""The dbt-compile Job, named by a hash of everything that affects the compile, so it runs once per input."""

from __future__ import annotations

from typing import Any

from phlo_operator.render import pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import DBT_HASH_ANNOTATION, Workflow, digest
from phlo_operator.vocabulary import DBT_COMPILE

COMPONENT = DBT_COMPILE


def spec_hash(wf: Workflow) -> str | None:
    """Hash of image, dbt settings and env; None when dbt is disabled."""
    spec = wf.spec
    if not spec.dbt.enabled:
        return None
    dbt = spec.dbt.model_dump(by_alias=True, include={"enabled", "project_dir", "profiles_dir", "target"})
    inputs: list[Any] = [wf.code_image, dbt, spec.workflows.path, pods.user_env(wf), pods.user_env_from(wf)]
    # What may change the compile (a Job's template cannot change: new inputs, a new Job). Only when set, so
    # the hash of a spec without them stays what it was.
    extra = {
        "env": [v.model_dump(by_alias=True, exclude_none=True) for v in spec.dbt.env],
        "envFrom": [v.model_dump(by_alias=True, exclude_none=True) for v in spec.dbt.env_from],
        "podOverrides": spec.dbt.pod_overrides,
    }
    if any(extra.values()):
        inputs.append({k: v for k, v in extra.items() if v})
    return digest(inputs, length=10)


def hash_of(job: dict[str, Any]) -> str:
    """The input hash a compile Job carries (the reconciler reads it from the Job, not recomputes it)."""
    return str(job["metadata"]["annotations"][DBT_HASH_ANNOTATION])


def dbt_env(wf: Workflow) -> list[dict[str, Any]]:
    """The compile needs no storage credentials: runtime settings, user env, a log path."""
    base = [*pods.runtime_env(wf), *pods.user_env(wf), {"name": "DBT_LOG_PATH", "value": "/tmp/dbt-logs"}]
    return pods.component_env(base, wf.spec.dbt)


def dbt_init_container(wf: Workflow) -> dict[str, Any]:
    """`phlo dbt compile` into the target emptyDir: the init container of code-server and run pods."""
    return pods.container(
        wf,
        "dbt-compile",
        ["phlo", "dbt", "compile"],
        dbt_env(wf),
        wf.spec.dbt,
        image=wf.code_image,
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}, pods.dbt_target_mount()],
        resources=pods.resources(wf.spec.dbt.resources or wf.spec.code_server.resources),
    )


def job_name(wf: Workflow, hash_: str) -> str:
    return wf.child(f"dbt-{hash_}")


def job(wf: Workflow, shared: Shared) -> dict[str, Any] | None:
    """`phlo dbt compile` with the same image, env and paths as the code server's init container."""
    hash_, main = shared.dbt_hash, shared.dbt_init
    if hash_ is None or main is None:
        return None
    spec = wf.spec
    pod = pods.pod_spec(
        wf,
        [main],
        [{"name": "tmp", "emptyDir": {}}, pods.dbt_target_volume()],
        spec.dbt,
        restartPolicy="Never",
    )
    meta = wf.metadata("x", COMPONENT)
    meta["name"] = job_name(wf, hash_)
    meta["labels"] = pods.labels(wf, COMPONENT, spec.dbt)
    meta["annotations"] = {DBT_HASH_ANNOTATION: hash_}
    template = {
        "metadata": {
            "labels": pods.labels(wf, COMPONENT, spec.dbt),
            "annotations": {**spec.dbt.pod_annotations, DBT_HASH_ANNOTATION: hash_},
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
            "template": pods.with_overrides(template, spec.dbt, "spec.dbt"),
        },
    }
