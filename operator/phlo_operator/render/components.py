"""The three Dagster Deployments (code server, webserver, daemon) and their Services."""

from __future__ import annotations

import json
from typing import Any

from phlo_dagster import constants as c
from phlo_operator.model import PodSettings
from phlo_operator.render import config, pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import DBT_HASH_ANNOTATION, WORKSPACE_FILE, Workflow, digest
from phlo_operator.vocabulary import CODE_SERVER, DAEMON, WEBSERVER

__all__ = ["CODE_SERVER", "DAEMON", "WEBSERVER"]


def surge_one() -> dict[str, Any]:
    """A new pod is Ready before an old one goes: the webserver and the code server never drop to zero."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def _replicas(wf: Workflow, wanted: int, name: str, hpa_targets: frozenset[str]) -> dict[str, Any]:
    if wf.spec.suspend:
        return {"replicas": 0}
    if name in hpa_targets:
        return {}  # an HPA owns spec.replicas; sending it would fight the autoscaler
    return {"replicas": wanted}


def _deployment(
    wf: Workflow,
    component: str,
    pod: dict[str, Any],
    annotations: dict[str, str],
    checksum: str,
    settings: PodSettings,
    where: str,
    referenced: str,
    **spec: Any,
) -> dict[str, Any]:
    """`where` names the component's field (spec.webserver), for a podOverrides problem."""
    meta = wf.metadata(component, component)
    meta["labels"] = pods.labels(wf, component, settings)
    template = {
        "metadata": pods.template_metadata(wf, component, annotations, checksum, settings, referenced),
        "spec": pod,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            **spec,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": wf.selector(component)},
            "template": pods.with_overrides(template, settings, where),
        },
    }


def code_server_env(wf: Workflow, shared: Shared) -> list[dict[str, Any]]:
    return pods.component_env(shared.env, wf.spec.code_server)


def code_server_server_id(wf: Workflow, shared: Shared) -> str:
    """One id per code version, shared by every replica, so the webserver does not see replicas as changes."""
    inputs: list[Any] = [
        wf.code_image,
        code_server_env(wf, shared),
        pods.env_from(wf, wf.spec.code_server),
        wf.spec.workflows.path,
        shared.dbt_hash,
    ]
    if wf.spec.code_server.pod_overrides:
        inputs.append(wf.spec.code_server.pod_overrides)  # may change the code's env or files
    return digest(inputs)


def code_server_deployment(
    wf: Workflow, shared: Shared, hpa_targets: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """gRPC code server; with dbt, an init container compiles the project (inputs the dbt Job proved)."""
    spec = wf.spec
    port = spec.code_server.port
    command = ["dagster", "api", "grpc", "-m", c.DEFINITIONS_MODULE, "-h", "0.0.0.0", "-p", str(port)]
    command += ["--fixed-server-id", code_server_server_id(wf, shared)]
    mounts = pods.base_mounts()
    volumes = [*pods.base_volumes(), pods.instance_volume(wf)]
    init: list[dict[str, Any]] = []
    if shared.dbt_init is not None:
        mounts.append(pods.dbt_target_mount())
        volumes.append(pods.dbt_target_volume())
        init.append(shared.dbt_init)
    # Dagster launches this location's runs with its image and container context (dagster.yaml has neither).
    env = [*code_server_env(wf, shared), {"name": "DAGSTER_CURRENT_IMAGE", "value": wf.code_image}]
    context = config.location_container_context(shared.dbt_init)
    if context is not None:
        env.append({"name": "DAGSTER_CONTAINER_CONTEXT", "value": json.dumps(context, sort_keys=True)})
    main = pods.container(
        wf,
        "code-server",
        command,
        env,
        spec.code_server,
        image=wf.code_image,
        ports=[{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
        readinessProbe={
            "grpc": {"port": port, "service": "DagsterApi"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        volumeMounts=mounts,
        resources=pods.resources(spec.code_server.resources),
    )
    extra: dict[str, Any] = {"initContainers": init} if init else {}
    pod = pods.pod_spec(wf, [main], volumes, spec.code_server, **extra)
    annotations = dict(spec.code_server.pod_annotations)
    if shared.dbt_hash:
        annotations[DBT_HASH_ANNOTATION] = shared.dbt_hash
    name = wf.child(CODE_SERVER)
    return _deployment(
        wf,
        CODE_SERVER,
        pod,
        annotations,
        shared.checksum,
        spec.code_server,
        "spec.codeServer",
        shared.referenced.get(CODE_SERVER, ""),
        **_replicas(wf, spec.code_server.replicas, name, hpa_targets),
        strategy=surge_one(),
    )


def code_server_service(wf: Workflow) -> dict[str, Any]:
    port = wf.spec.code_server.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.metadata(CODE_SERVER, CODE_SERVER),
        "spec": {
            "type": "ClusterIP",
            "selector": wf.selector(CODE_SERVER),
            "ports": [{"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP"}],
        },
    }


def webserver_deployment(
    wf: Workflow, shared: Shared, hpa_targets: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """UI, /graphql and Prometheus /metrics on one port; no liveness probe that could kill a busy process."""
    spec = wf.spec
    port = spec.webserver.port
    command = ["phlo", "webserver", "--host", "0.0.0.0", "--port", str(port), "--workspace", WORKSPACE_FILE]
    prefix = spec.webserver.path_prefix or ""
    if prefix:
        command += ["--path-prefix", prefix]
    main = pods.container(
        wf,
        WEBSERVER,
        command,
        pods.component_env(shared.env, spec.webserver),
        spec.webserver,
        ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        readinessProbe={
            "httpGet": {"path": f"{prefix}/server_info", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        volumeMounts=[*pods.base_mounts(), pods.workspace_mount()],
        resources=pods.resources(spec.webserver.resources),
    )
    annotations = dict(spec.webserver.pod_annotations)
    if spec.metrics.enabled:
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": c.METRICS_PATH,
            }
        )
    volumes = [*pods.base_volumes(), pods.instance_volume(wf), pods.workspace_volume(wf)]
    pod = pods.pod_spec(wf, [main], volumes, spec.webserver, automount=True)
    name = wf.child(WEBSERVER)
    return _deployment(
        wf,
        WEBSERVER,
        pod,
        annotations,
        shared.checksum,
        spec.webserver,
        "spec.webserver",
        shared.referenced.get(WEBSERVER, ""),
        **_replicas(wf, spec.webserver.replicas, name, hpa_targets),
        strategy=surge_one(),
    )


def webserver_service(wf: Workflow) -> dict[str, Any]:
    """Ports http (UI, /graphql) and, with metrics, metrics: both reach the one HTTP port serving /metrics."""
    ports = [{"name": "http", "port": wf.spec.webserver.port, "targetPort": "http", "protocol": "TCP"}]
    if wf.spec.metrics.enabled:
        ports.append(
            {"name": "metrics", "port": wf.spec.metrics.port, "targetPort": "http", "protocol": "TCP"}
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.metadata(WEBSERVER, WEBSERVER),
        "spec": {"type": wf.spec.webserver.service_type, "selector": wf.selector(WEBSERVER), "ports": ports},
    }


def daemon_deployment(wf: Workflow, shared: Shared) -> dict[str, Any]:
    """Exactly one daemon, ever: 1 replica and Recreate, so two never overlap during a rollout."""
    spec = wf.spec
    main = pods.container(
        wf,
        DAEMON,
        ["dagster-daemon", "run", "-w", WORKSPACE_FILE],
        pods.component_env(shared.env, spec.daemon),
        spec.daemon,
        volumeMounts=[*pods.base_mounts(), pods.workspace_mount()],
        resources=pods.resources(spec.daemon.resources),
        # Ready once every daemon (scheduler, sensors, run queue, monitor) wrote a heartbeat to the instance;
        # restarted when heartbeats stop for good. An exec probe starts Python: probe rarely.
        readinessProbe={
            "exec": {"command": ["dagster-daemon", "liveness-check"]},
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "timeoutSeconds": 30,
        },
        livenessProbe={
            "exec": {"command": ["dagster-daemon", "liveness-check"]},
            "initialDelaySeconds": 300,
            "periodSeconds": 60,
            "timeoutSeconds": 30,
            "failureThreshold": 5,
        },
    )
    volumes = [*pods.base_volumes(), pods.instance_volume(wf), pods.workspace_volume(wf)]
    pod = pods.pod_spec(wf, [main], volumes, spec.daemon, automount=True)
    return _deployment(
        wf,
        DAEMON,
        pod,
        dict(spec.daemon.pod_annotations),
        shared.checksum,
        spec.daemon,
        "spec.daemon",
        shared.referenced.get(DAEMON, ""),
        replicas=0 if spec.suspend else 1,
        strategy={"type": "Recreate"},
    )
