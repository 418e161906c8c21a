"""Everything one PhloWorkflow wants to exist (and not exist), as plain dicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from phlo_operator.render import access, components, config, dbt, exposure, monitoring, pods, policy, postgres
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import Workflow, digest

Ref = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the renderers need to know about the cluster (read by the reconciler, passed in)."""

    service_monitor_api: bool = False
    http_route_api: bool = False  # the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is installed
    hpa_targets: frozenset[str] = frozenset()
    # By component: checksum of the ConfigMap and Secret content its pods read (env, envFrom, storage Secret).
    referenced_checksums: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Desired:
    """objects are applied every pass; code_server waits for dbt (dbt_job carries the input hash it was
    named by); absent must be deleted when present."""

    objects: list[dict[str, Any]]
    code_server: dict[str, Any]
    dbt_job: dict[str, Any] | None
    absent: list[Ref]


def ref(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def shared(wf: Workflow, referenced: Mapping[str, str] | None = None) -> Shared:
    """What several renderers need, each computed once."""
    dbt_init = dbt.dbt_init_container(wf) if wf.spec.dbt.enabled else None
    instance, workspace = config.dagster_yaml(wf), config.workspace_yaml(wf)
    return Shared(
        env=pods.dagster_env(wf),
        dbt_hash=dbt.spec_hash(wf),
        dbt_init=dbt_init,
        instance=instance,
        workspace=workspace,
        checksum=digest([instance, workspace, wf.postgres_secret]),
        referenced=dict(referenced or {}),
    )


def render_all(wf: Workflow, facts: Facts | None = None) -> Desired:
    """Pure: the same inputs always give the same manifests."""
    spec = wf.spec
    facts = facts or Facts()
    once = shared(wf, facts.referenced_checksums)
    objects: list[dict[str, Any]] = [
        config.instance_configmap(wf, once),
        config.workspace_configmap(wf, once),
    ]
    absent: list[Ref] = []
    if wf.run_namespace != wf.namespace:
        objects.append(config.instance_configmap(wf, once, namespace=wf.run_namespace))
    sa = access.service_account(wf)
    if sa is not None:
        objects.append(sa)
    else:
        absent.append(("v1", "ServiceAccount", wf.namespace, wf.child("dagster")))
    objects += [access.role(wf), access.role_binding(wf)]
    if spec.storage.postgres.is_managed:
        objects += [postgres.service_account(wf), postgres.service(wf), postgres.statefulset(wf)]
    else:
        absent += [
            ("v1", "ServiceAccount", wf.namespace, wf.postgres_service_account),
            ("apps/v1", "StatefulSet", wf.namespace, wf.child(postgres.COMPONENT)),
            ("v1", "Service", wf.namespace, wf.child(postgres.COMPONENT)),
        ]
    objects += [
        components.code_server_service(wf),
        components.webserver_service(wf),
        components.webserver_deployment(wf, once, facts.hpa_targets),
        components.daemon_deployment(wf, once),
        policy.code_server_network_policy(wf),
    ]
    pdbs = policy.pod_disruption_budgets(wf)
    objects += pdbs
    present = {ref(p) for p in pdbs}
    for component in (components.WEBSERVER, components.CODE_SERVER):
        pdb_ref = ("policy/v1", "PodDisruptionBudget", wf.namespace, wf.child(component))
        if pdb_ref not in present:
            absent.append(pdb_ref)
    monitor_ref = ("monitoring.coreos.com/v1", "ServiceMonitor", wf.namespace, wf.child(components.WEBSERVER))
    if spec.metrics.enabled and spec.metrics.service_monitor.enabled and facts.service_monitor_api:
        objects.append(monitoring.service_monitor(wf))
    elif facts.service_monitor_api:
        absent.append(monitor_ref)
    if spec.ingress.enabled:
        objects.append(exposure.ingress(wf))
    else:
        absent.append(("networking.k8s.io/v1", "Ingress", wf.namespace, wf.child(components.WEBSERVER)))
    if spec.http_route.enabled and facts.http_route_api:
        objects.append(exposure.http_route(wf))
    elif facts.http_route_api:
        absent.append((exposure.HTTP_ROUTE_API[0], "HTTPRoute", wf.namespace, wf.child(components.WEBSERVER)))
    return Desired(
        objects=objects,
        code_server=components.code_server_deployment(wf, once, facts.hpa_targets),
        dbt_job=dbt.job(wf, once),
        absent=absent,
    )
