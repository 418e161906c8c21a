"""ConfigMaps with dagster.yaml (Postgres storage, queued runs, K8sRunLauncher) and workspace.yaml."""

from __future__ import annotations

from typing import Any

import yaml

from phlo_dagster import constants as c
from phlo_operator import instance_schema
from phlo_operator import model as m
from phlo_operator.render import pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import DAGSTER_HOME, Workflow
from phlo_operator.vocabulary import CONFIG, RUN


def _env(name: str) -> dict[str, str]:
    return {"env": name}


RUN_CONTAINER = "dagster"  # the name dagster-k8s gives a run's container


def run_k8s_config(wf: Workflow) -> dict[str, Any]:
    """Raw Kubernetes config for run Jobs: TTL, labels for the NetworkPolicy, hardened pods, the same env,
    then spec.runLauncher.runs (resources, scheduling, labels, podOverrides). Nothing of the code location
    (its image, its dbt init container): see location_container_context. A run's dagster-k8s/config tag goes
    on top of both in dagster-k8s."""
    runs = wf.spec.run_launcher.runs
    container: dict[str, Any] = {
        "env": pods.component_env(pods.dagster_env(wf, wf.run_postgres_secret), runs),
        "securityContext": pods.container_security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dagster-home", "mountPath": DAGSTER_HOME},
        ],
    }
    sources = pods.env_from(wf, runs)
    if sources:
        container["envFrom"] = sources
    res = pods.resources(runs.resources)
    if res:
        container["resources"] = res
    pod_spec: dict[str, Any] = {
        "securityContext": pods.pod_security_context(),
        "volumes": pods.base_volumes(),
    }
    pod_spec.update(pods.scheduling(wf, runs))
    # Labelled like the pods, so deleting the PhloWorkflow finds (and deletes) the Jobs it launched.
    labels = {**runs.labels, **wf.selector(RUN)}
    metadata: dict[str, Any] = {"labels": labels}
    if runs.pod_annotations:
        metadata["annotations"] = dict(runs.pod_annotations)
    if runs.pod_overrides:
        # Merged as one pod template, then split back into the launcher's pieces.
        template = {
            "metadata": metadata,
            "spec": {**pod_spec, "containers": [{"name": RUN_CONTAINER, **container}]},
        }
        merged = pods.with_overrides(template, runs, "spec.runLauncher.runs")
        metadata, pod_spec = merged["metadata"], merged["spec"]
        main = next(ctr for ctr in pod_spec["containers"] if ctr["name"] == RUN_CONTAINER)
        container = {k: v for k, v in main.items() if k != "name"}
        sidecars = [ctr for ctr in pod_spec["containers"] if ctr["name"] != RUN_CONTAINER]
        pod_spec = {k: v for k, v in pod_spec.items() if k != "containers"}
        if sidecars:
            pod_spec["containers"] = sidecars  # dagster-k8s appends them after the run's container
    return {
        "job_spec_config": {
            "ttlSecondsAfterFinished": wf.spec.run_launcher.job_ttl_seconds,
            "backoffLimit": 0,
        },
        "job_metadata": {"labels": labels},
        "pod_template_spec_metadata": metadata,
        "container_config": container,
        "pod_spec_config": pod_spec,
    }


def location_container_context(
    dbt_init: dict[str, Any] | None, env: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """What the code location adds to its run pods: the runtime env it differs in from dagster.yaml's run env
    (its PHLO_CODE_LOCATION_NAME, WORKFLOWS_PATH, dbt settings; appended after, so they win), and with dbt the
    compile as an init container (run workers load the definitions too) in the code image. The code server
    hands it to Dagster (DAGSTER_CONTAINER_CONTEXT); dagster-k8s merges it over the launcher's run_k8s_config,
    lists appended. So dagster.yaml, which the webserver and the daemon mount, holds nothing that changes with
    a location."""
    if dbt_init is None and not env:
        return None
    container: dict[str, Any] = {}
    pod: dict[str, Any] = {}
    if env:
        container["env"] = env
    if dbt_init is not None:
        container["volumeMounts"] = [pods.dbt_target_mount()]
        pod = {"volumes": [pods.dbt_target_volume()], "initContainers": [dbt_init]}
    run: dict[str, Any] = {"container_config": container}
    if pod:
        run["pod_spec_config"] = pod
    return {"k8s": {"run_k8s_config": run}}


def _pull_secrets(wf: Workflow) -> dict[str, Any]:
    """The launcher puts these on every run pod, before any a run's dagster-k8s/config tag adds."""
    if not wf.spec.image_pull_secrets:
        return {}
    return {"image_pull_secrets": [{"name": ref.name} for ref in wf.spec.image_pull_secrets]}


def run_queue(spec: m.PhloWorkflowSpec) -> dict[str, Any]:
    """spec.runCoordinator as Dagster's run-queue settings (empty: Dagster's defaults)."""
    queue: dict[str, Any] = {}
    coordinator = spec.run_coordinator
    if coordinator.max_concurrent_runs is not None:
        queue["max_concurrent_runs"] = coordinator.max_concurrent_runs
    if coordinator.tag_concurrency_limits:
        limits = []
        for tag in coordinator.tag_concurrency_limits:
            limit: dict[str, Any] = {"key": tag.key, "limit": tag.limit}
            if tag.value is not None:
                limit["value"] = tag.value
            elif tag.apply_limit_per_unique_value:
                limit["value"] = {"applyLimitPerUniqueValue": True}
            limits.append(limit)
        queue["tag_concurrency_limits"] = limits
    return queue


def instance_settings(spec: m.PhloWorkflowSpec) -> dict[str, Any]:
    """The typed instance settings: run queue, run retries, tick retention, concurrency pools."""
    coordinator: dict[str, Any] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    out: dict[str, Any] = {"run_coordinator": coordinator}
    queue = run_queue(spec)
    pools = spec.concurrency.pools if spec.concurrency else None
    if pools is not None:
        # Dagster refuses run-queue limits in the coordinator's config once concurrency is configured.
        pool_config = {"default_limit": pools.default_limit, "granularity": pools.granularity}
        out["concurrency"] = {"pools": {k: v for k, v in pool_config.items() if v is not None}}
        if queue:
            out["concurrency"]["runs"] = queue
    elif queue:
        coordinator["config"] = queue
    if spec.run_retries is not None:
        retries = spec.run_retries
        out["run_retries"] = {
            "enabled": retries.max_retries > 0,
            "max_retries": retries.max_retries,
            "retry_on_asset_or_op_failure": retries.retry_on_asset_or_op_failure,
        }
    if spec.retention is not None:
        retention = {}
        for kind, ticks in (
            ("schedule", spec.retention.schedule),
            ("sensor", spec.retention.sensor),
            ("auto_materialize", spec.retention.auto_materialize),
        ):
            days = ticks.model_dump(exclude_none=True) if ticks else {}
            if days:
                retention[kind] = {"purge_after_days": days}
        if retention:
            out["retention"] = retention
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes the key, any other value replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def dagster_yaml(wf: Workflow) -> dict[str, Any]:
    """The Dagster instance config, checked against Dagster's instance schema; raises InvalidSpec naming
    the key Dagster would refuse. Secrets are read from env at runtime, never written here."""
    rendered = merge_patch(_operator_instance(wf), instance_settings(wf.spec))
    merged: dict[str, Any] = merge_patch(rendered, wf.spec.instance_config or {})
    problems = instance_schema.problems(merged)
    if problems:
        field = "spec.instanceConfig" if wf.spec.instance_config else "spec"
        raise m.InvalidSpec(
            f"{field}: Dagster {instance_schema.dagster_version()} would refuse the resulting dagster.yaml: "
            + "; ".join(problems)
        )
    return merged


def _operator_instance(wf: Workflow) -> dict[str, Any]:
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "hostname": _env(c.ENV_PG_HOST),
                    "port": _env(c.ENV_PG_PORT),
                    "username": _env(c.ENV_PG_USER),
                    "password": _env(c.ENV_PG_PASSWORD),
                    "db_name": _env(c.ENV_PG_DB),
                    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; dagster-postgres ships psycopg2.
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "instance_config_map": wf.instance_configmap,
                "dagster_home": DAGSTER_HOME,
                "job_namespace": wf.run_namespace,
                "image_pull_policy": wf.spec.image_pull_policy,
                "service_account_name": wf.service_account,
                "load_incluster_config": True,
                "run_k8s_config": run_k8s_config(wf),
                **_pull_secrets(wf),
            },
        },
        # The daemon's run monitor enforces max_runtime_seconds (the dagster/max_runtime tag) and fails
        # runs whose worker pod never started or died.
        "run_monitoring": {"enabled": True, "start_timeout_seconds": 300, "poll_interval_seconds": 30},
        "telemetry": {"enabled": False},
        **_compute_logs(wf),
    }


def _compute_logs(wf: Workflow) -> dict[str, Any]:
    """spec.computeLogs.s3: Dagster's S3ComputeLogManager (dagster-aws); credentials come from env."""
    s3 = wf.spec.s3_logs
    if s3 is None:
        return {}
    config: dict[str, Any] = {"bucket": s3.bucket, "prefix": s3.prefix}
    if s3.endpoint_url:
        config["endpoint_url"] = s3.endpoint_url
    if s3.region:
        config["region"] = s3.region
    return {
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": config,
        }
    }


def workspace_yaml(wf: Workflow) -> dict[str, Any]:
    """One gRPC code location per spec.codeLocations entry (phlo without), each served by its Service."""
    return {
        "load_from": [
            {
                "grpc_server": {
                    "host": wf.location_service(loc),
                    "port": wf.location_service_port(loc),
                    "location_name": loc.name,
                }
            }
            for loc in wf.locations
        ]
    }


def _dump(value: dict[str, Any]) -> str:
    return yaml.safe_dump(value, sort_keys=True)


def instance_configmap(wf: Workflow, shared: Shared, namespace: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": wf.metadata("instance", CONFIG, namespace=namespace),
        "data": {"dagster.yaml": _dump(shared.instance)},
    }


def workspace_configmap(wf: Workflow, shared: Shared) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": wf.metadata("workspace", CONFIG),
        "data": {"workspace.yaml": _dump(shared.workspace)},
    }
