"""The three Dagster Deployments (code server, webserver, daemon) and their Services."""

from __future__ import annotations

import json
from typing import Any

from phlo_dagster import constants as c
from phlo_operator.model import PodSettings
from phlo_operator.render import auth, config, pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import DBT_HASH_ANNOTATION, WORKSPACE_FILE, Location, Workflow, digest
from phlo_operator.vocabulary import CODE_SERVER, DAEMON, WEBSERVER, WEBSERVER_READ_ONLY

__all__ = ["CODE_SERVER", "DAEMON", "WEBSERVER", "WEBSERVER_READ_ONLY"]


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
    loc: Location | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """`where` names the component's field (spec.webserver), for a podOverrides problem; a code location's
    Deployment takes its names and labels from `loc`."""
    extra = loc.extra_labels if loc else {}
    meta = wf.location_metadata(loc) if loc else wf.metadata(component, component)
    meta["labels"] = {**pods.labels(wf, component, settings), **extra}
    template_meta = pods.template_metadata(wf, component, annotations, checksum, settings, referenced)
    template_meta["labels"].update(extra)
    template = {"metadata": template_meta, "spec": pod}
    selector = wf.location_selector(loc) if loc else wf.selector(component)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            **spec,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": pods.with_overrides(template, settings, where),
        },
    }


def code_server_env(wf: Workflow, shared: Shared, loc: Location | None = None) -> list[dict[str, Any]]:
    loc = loc or wf.locations[0]
    return pods.component_env(shared.locations[loc.name].env, loc.server)


def code_server_server_id(wf: Workflow, shared: Shared, loc: Location | None = None) -> str:
    """One id per code version, shared by every replica, so the webserver does not see replicas as changes."""
    loc = loc or wf.locations[0]
    inputs: list[Any] = [
        loc.image,
        code_server_env(wf, shared, loc),
        pods.env_from(wf, loc.server),
        loc.workflows.path,
        shared.locations[loc.name].dbt_hash,
    ]
    if loc.server.pod_overrides:
        inputs.append(loc.server.pod_overrides)  # may change the code's env or files
    return digest(inputs)


def code_server_deployment(
    wf: Workflow, shared: Shared, hpa_targets: frozenset[str] = frozenset(), loc: Location | None = None
) -> dict[str, Any]:
    """A location's gRPC code server (default: the first location's); with dbt, an init container compiles
    the project (inputs the location's dbt Job proved)."""
    loc = loc or wf.locations[0]
    server, parts = loc.server, shared.locations[loc.name]
    port = server.port
    command = ["dagster", "api", "grpc", "-m", c.DEFINITIONS_MODULE, "-h", "0.0.0.0", "-p", str(port)]
    command += ["--fixed-server-id", code_server_server_id(wf, shared, loc)]
    mounts = pods.base_mounts()
    volumes = [*pods.base_volumes(), pods.instance_volume(wf)]
    init: list[dict[str, Any]] = []
    if parts.dbt_init is not None:
        mounts.append(pods.dbt_target_mount())
        volumes.append(pods.dbt_target_volume())
        init.append(parts.dbt_init)
    # Dagster launches this location's runs with its image and container context (dagster.yaml has neither).
    env = [*code_server_env(wf, shared, loc), {"name": "DAGSTER_CURRENT_IMAGE", "value": loc.image}]
    context = config.location_container_context(parts.dbt_init, pods.location_env_delta(wf, loc))
    if context is not None:
        env.append({"name": "DAGSTER_CONTAINER_CONTEXT", "value": json.dumps(context, sort_keys=True)})
    main = pods.container(
        wf,
        "code-server",
        command,
        env,
        server,
        image=loc.image,
        pull_policy=loc.image_pull_policy,
        ports=[{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
        readinessProbe={
            "grpc": {"port": port, "service": "DagsterApi"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        lifecycle=pods.drain_on_stop(),
        volumeMounts=mounts,
        resources=pods.resources(server.resources),
    )
    extra: dict[str, Any] = {"initContainers": init} if init else {}
    pod = pods.pod_spec(wf, [main], volumes, server, **extra)
    annotations = dict(server.pod_annotations)
    if parts.dbt_hash:
        annotations[DBT_HASH_ANNOTATION] = parts.dbt_hash
    name = wf.child(loc.suffix)
    return _deployment(
        wf,
        loc.component,
        pod,
        annotations,
        shared.checksum,
        server,
        loc.field,
        shared.referenced.get(loc.key, ""),
        loc,
        **_replicas(wf, server.replicas, name, hpa_targets),
        strategy=surge_one(),
    )


def code_server_service(wf: Workflow, loc: Location | None = None) -> dict[str, Any]:
    loc = loc or wf.locations[0]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.location_metadata(loc),
        "spec": {
            "type": "ClusterIP",
            "selector": wf.location_selector(loc),
            "ports": [
                {
                    "name": "grpc",
                    "port": wf.location_service_port(loc),
                    "targetPort": "grpc",
                    "protocol": "TCP",
                }
            ],
        },
    }


def webserver_deployment(
    wf: Workflow, shared: Shared, hpa_targets: frozenset[str] = frozenset(), read_only: bool = False
) -> dict[str, Any]:
    """UI, /graphql and Prometheus /metrics on one port; no liveness probe that could kill a busy process.
    read_only: the second webserver (webserver.readOnly), `--read-only`, same settings, no auth proxy."""
    spec = wf.spec
    port = spec.webserver.port
    command = ["phlo", "webserver", "--host", "0.0.0.0", "--port", str(port), "--workspace", WORKSPACE_FILE]
    prefix = spec.webserver.path_prefix or ""
    if prefix:
        command += ["--path-prefix", prefix]
    if read_only:
        command.append("--read-only")
    component = WEBSERVER_READ_ONLY if read_only else WEBSERVER
    proxied = spec.auth.enabled and not read_only
    main = pods.container(
        wf,
        WEBSERVER,
        command,
        pods.component_env(shared.env, spec.webserver),
        spec.webserver,
        image=shared.instance_image,
        ports=[{"name": "http", "containerPort": port, "protocol": "TCP"}],
        readinessProbe={
            "httpGet": {"path": f"{prefix}/server_info", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        },
        lifecycle=pods.drain_on_stop(),
        volumeMounts=[*pods.base_mounts(), pods.workspace_mount()],
        resources=pods.resources(spec.webserver.resources),
    )
    annotations = dict(spec.webserver.pod_annotations)
    if spec.metrics.enabled:
        annotations.update(
            {
                "prometheus.io/scrape": "true",
                # With auth, scrapers go through the proxy (GET /metrics passes without sign-in).
                "prometheus.io/port": str(spec.auth.port if proxied else port),
                "prometheus.io/path": c.METRICS_PATH,
            }
        )
    volumes = [*pods.base_volumes(), pods.instance_volume(wf), pods.workspace_volume(wf)]
    containers = [main, auth.container(wf)] if proxied else [main]
    pod = pods.pod_spec(wf, containers, volumes, spec.webserver, automount=True)
    name = wf.child(component)
    replicas = spec.webserver.read_only.replicas if read_only else spec.webserver.replicas
    referenced = shared.referenced.get(component, "")  # the read-only one's leaves the auth Secret out
    return _deployment(
        wf,
        component,
        pod,
        annotations,
        shared.checksum,
        spec.webserver,
        "spec.webserver",
        referenced,
        **_replicas(wf, replicas, name, hpa_targets),
        strategy=surge_one(),
    )


def webserver_service(wf: Workflow) -> dict[str, Any]:
    """Ports http (UI, /graphql) and, with metrics, metrics: both reach the one HTTP port serving /metrics.
    With spec.auth both reach the proxy instead, and port `direct` (auth.port) the webserver itself, for the
    operator's GraphQL calls (the webserver's NetworkPolicy admits only the operator there)."""
    front = auth.PORT_NAME if wf.spec.auth.enabled else "http"
    ports = [{"name": "http", "port": wf.spec.webserver.port, "targetPort": front, "protocol": "TCP"}]
    if wf.spec.metrics.enabled:
        ports.append(
            {"name": "metrics", "port": wf.spec.metrics.port, "targetPort": front, "protocol": "TCP"}
        )
    if wf.spec.auth.enabled:
        ports.append({"name": "direct", "port": wf.spec.auth.port, "targetPort": "http", "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.metadata(WEBSERVER, WEBSERVER),
        "spec": {"type": wf.spec.webserver.service_type, "selector": wf.selector(WEBSERVER), "ports": ports},
    }


def read_only_webserver_service(wf: Workflow) -> dict[str, Any]:
    """ClusterIP, port http (UI, /graphql, /metrics): expose it with an Ingress of your own if wanted."""
    port = wf.spec.webserver.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.metadata(WEBSERVER_READ_ONLY, WEBSERVER_READ_ONLY),
        "spec": {
            "type": "ClusterIP",
            "selector": wf.selector(WEBSERVER_READ_ONLY),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def daemon_deployment(wf: Workflow, shared: Shared) -> dict[str, Any]:
    """Exactly one daemon, ever: 1 replica and Recreate, so two never overlap during a rollout."""
    spec = wf.spec
    main = pods.container(
        wf,
        DAEMON,
        ["phlo", "daemon", "--workspace", WORKSPACE_FILE, "--health-port", str(c.DAEMON_HEALTH_PORT)],
        pods.component_env(shared.env, spec.daemon),
        spec.daemon,
        image=shared.instance_image,
        ports=[{"name": "health", "containerPort": c.DAEMON_HEALTH_PORT, "protocol": "TCP"}],
        volumeMounts=[*pods.base_mounts(), pods.workspace_mount()],
        resources=pods.resources(spec.daemon.resources),
        # Ready once every daemon (scheduler, sensors, run queue, monitor) wrote a heartbeat to the instance;
        # restarted when heartbeats stop for good. The daemon's own process answers (phlo_dagster.daemon): an
        # exec of `dagster-daemon liveness-check` started Python for each probe and timed out on a busy node.
        readinessProbe={
            "httpGet": {"path": c.DAEMON_HEALTH_PATH, "port": "health"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 10,
        },
        livenessProbe={
            "httpGet": {"path": c.DAEMON_HEALTH_PATH, "port": "health"},
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
