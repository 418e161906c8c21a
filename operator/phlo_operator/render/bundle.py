"""Everything one PhloWorkflow wants to exist (and not exist), as plain dicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from phlo_operator import names
from phlo_operator.render import access, components, config, dbt, exposure, monitoring, pods, policy, postgres
from phlo_operator.render.shared import LocationParts, Shared
from phlo_operator.render.workflow import Location, Workflow, digest

Ref = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the renderers need to know about the cluster (read by the reconciler, passed in)."""

    service_monitor_api: bool = False
    http_route_api: bool = False  # the Gateway API (gateway.networking.k8s.io/v1 HTTPRoute) is installed
    hpa_targets: frozenset[str] = frozenset()
    # By component: checksum of the ConfigMap and Secret content its pods read (env, envFrom, storage Secret).
    referenced_checksums: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Code locations the workflow had (status.codeLocations): the objects of those it no longer has go.
    previous_locations: frozenset[str] = frozenset()
    # The image the webserver and daemon run (the reconciler's upgrade step decides); None: spec.image.
    instance_image: str | None = None


@dataclasses.dataclass(frozen=True)
class LocationDesired:
    """One code location's code-server Deployment, which waits for its dbt Job (None: dbt disabled; the Job
    carries the input hash it was named by)."""

    location: Location
    code_server: dict[str, Any]
    dbt_job: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class Desired:
    """objects are applied every pass; each location's code server waits for its dbt Job; absent must be
    deleted when present."""

    objects: list[dict[str, Any]]
    locations: list[LocationDesired]
    absent: list[Ref]

    @property
    def code_server(self) -> dict[str, Any]:
        """The first location's code-server Deployment (the only one without spec.codeLocations)."""
        return self.locations[0].code_server

    @property
    def dbt_job(self) -> dict[str, Any] | None:
        return self.locations[0].dbt_job

    def all_objects(self) -> list[dict[str, Any]]:
        """Every object rendered: those applied every pass, each location's code server and dbt Job."""
        gated = [obj for loc in self.locations for obj in (loc.code_server, loc.dbt_job) if obj is not None]
        return [*self.objects, *gated]


def ref(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def shared(
    wf: Workflow, referenced: Mapping[str, str] | None = None, instance_image: str | None = None
) -> Shared:
    """What several renderers need, each computed once."""
    instance, workspace = config.dagster_yaml(wf), config.workspace_yaml(wf)
    locations = {
        loc.name: LocationParts(
            env=pods.dagster_env(wf, loc=loc),
            dbt_hash=dbt.spec_hash(wf, loc),
            dbt_init=dbt.dbt_init_container(wf, loc) if loc.dbt.enabled else None,
        )
        for loc in wf.locations
    }
    return Shared(
        env=pods.dagster_env(wf),
        instance=instance,
        workspace=workspace,
        checksum=digest([instance, workspace, wf.postgres_secret]),
        locations=locations,
        referenced=dict(referenced or {}),
        instance_image=instance_image,
    )


def _location_refs(wf: Workflow, suffix: str) -> list[Ref]:
    """What a code location has besides its dbt Jobs, by child-name suffix."""
    name = wf.child(suffix)
    return [
        ("apps/v1", "Deployment", wf.namespace, name),
        ("v1", "Service", wf.namespace, name),
        ("networking.k8s.io/v1", "NetworkPolicy", wf.namespace, name),
        ("policy/v1", "PodDisruptionBudget", wf.namespace, name),
    ]


def render_all(wf: Workflow, facts: Facts | None = None) -> Desired:
    """Pure: the same inputs always give the same manifests."""
    spec = wf.spec
    facts = facts or Facts()
    once = shared(wf, facts.referenced_checksums, facts.instance_image)
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
    locations = wf.locations
    objects += [components.code_server_service(wf, loc) for loc in locations]
    objects += [
        components.webserver_service(wf),
        components.webserver_deployment(wf, once, facts.hpa_targets),
        components.daemon_deployment(wf, once),
    ]
    objects += [policy.code_server_network_policy(wf, loc) for loc in locations]
    read_only_refs = [
        ("apps/v1", "Deployment", wf.namespace, wf.child(components.WEBSERVER_READ_ONLY)),
        ("v1", "Service", wf.namespace, wf.child(components.WEBSERVER_READ_ONLY)),
    ]
    if spec.webserver.read_only.enabled:
        objects += [
            components.read_only_webserver_service(wf),
            components.webserver_deployment(wf, once, facts.hpa_targets, read_only=True),
        ]
    else:
        absent += read_only_refs
    if spec.auth.enabled:
        objects.append(policy.webserver_network_policy(wf))
    else:
        absent.append(("networking.k8s.io/v1", "NetworkPolicy", wf.namespace, wf.child(components.WEBSERVER)))
    pdbs = policy.pod_disruption_budgets(wf)
    objects += pdbs
    present = {ref(p) for p in pdbs}
    for suffix in (components.WEBSERVER, *(loc.suffix for loc in locations)):
        pdb_ref = ("policy/v1", "PodDisruptionBudget", wf.namespace, wf.child(suffix))
        if pdb_ref not in present:
            absent.append(pdb_ref)
    # A location gone from the spec (or the implicit phlo, once codeLocations lists others): its objects go.
    current = {loc.suffix for loc in locations}
    gone = {names.location_suffix(name) for name in facts.previous_locations} | {names.CODE_SERVER_SUFFIX}
    for suffix in sorted(gone - current):
        absent += [r for r in _location_refs(wf, suffix) if r not in absent]
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
        locations=[
            LocationDesired(
                loc,
                components.code_server_deployment(wf, once, facts.hpa_targets, loc),
                dbt.job(wf, once, loc),
            )
            for loc in locations
        ],
        absent=absent,
    )
