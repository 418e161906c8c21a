"""The steps of one reconcile pass. Each takes what it needs (the API client, the workflow, the last
status) and returns a Found: its finding plus what it did (writes, Events to post, status bookkeeping to
record). No step writes status or posts Events itself: reconciler.py composes the steps and reports once."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

from phlo_dagster import constants as c
from phlo_operator import model as m
from phlo_operator import names
from phlo_operator import status as st
from phlo_operator import vocabulary as v
from phlo_operator.apply import Api, ApiError, Ref, ref_of
from phlo_operator.reload import LocationState, ReloadFailed, webserver_base
from phlo_operator.render import Desired, Workflow
from phlo_operator.render import dbt as dbt_render
from phlo_operator.render import exposure as exposure_render
from phlo_operator.render import instance as instance_render
from phlo_operator.render import postgres as pg_render
from phlo_operator.render.workflow import RUN_SECRET_SUFFIX, Location, digest

log = logging.getLogger(__name__)
T = TypeVar("T")
Obj = dict[str, Any]
Previous = Mapping[str, Any]  # the PhloWorkflow's status as this pass found it
Reloader = Callable[[str, str], str]
Prober = Callable[[str, str, str | None], LocationState]


class Event(NamedTuple):
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Found(Generic[T]):
    """A step's finding (value) and its side effects: API writes made, Events and status bookkeeping."""

    value: T
    writes: int = 0
    events: tuple[Event, ...] = ()
    status: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Ledger:
    """What the steps of one pass did so far; kept when a later step fails, so its Events still go out."""

    writes: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)
    status: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def take(self, found: Found[T]) -> T:
        self.writes += found.writes
        self.events += found.events
        for key, value in found.status.items():
            self.status.setdefault(key, {}).update(value)
        return found.value


class Problem(NamedTuple):
    """Something in the cluster the spec relies on is missing or wrong: a condition reason and a message."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Compile:
    """The dbt compile for the current inputs, and whether the code server may roll to them."""

    observation: st.DbtObservation
    code_server_may_roll: bool


def apply(kube: Api, obj: Obj) -> tuple[int, Obj]:
    """Server-side apply unless live already matches; returns (writes, the live object)."""
    live = kube.get(ref_of(obj))
    if live and obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
        # An HPA owns replicas: echo the live value so dropping the field never resets it to the default.
        obj = {**obj, "spec": {**obj["spec"], "replicas": live.get("spec", {}).get("replicas", 1)}}
    written, result = kube.apply(obj, live)
    return int(written), result


# -- facts about the cluster the renderers need
def hpa_targets(kube: Api, wf: Workflow) -> Found[frozenset[str]]:
    """Deployments an HPA scales: their replicas are left to it."""
    targets: set[str] = set()
    try:
        for hpa in kube.list("autoscaling/v2", "HorizontalPodAutoscaler", wf.namespace):
            target = hpa.get("spec", {}).get("scaleTargetRef", {})
            if target.get("kind") == "Deployment":
                targets.add(target.get("name", ""))
    except ApiError as exc:
        log.debug("cannot list HPAs: %s", exc)
    return Found(frozenset(targets))


def service_monitor_api(kube: Api, wf: Workflow, previous: Previous) -> Found[bool]:
    """Whether the ServiceMonitor API exists; a Warning Event when one is asked for but cannot be made."""
    before = (previous.get("metrics") or {}).get("serviceMonitor") or "Disabled"
    try:
        found = kube.has_api("monitoring.coreos.com/v1", "servicemonitors")
    except ApiError:
        return Found(before == "Applied", status={"metrics": {"serviceMonitor": before}})
    wanted = wf.spec.metrics.enabled and wf.spec.metrics.service_monitor.enabled
    state = "Disabled" if not wanted else ("Applied" if found else "CRDMissing")
    events: tuple[Event, ...] = ()
    if state == "CRDMissing" and before != state:
        message = (
            "metrics.serviceMonitor.enabled is true but the monitoring.coreos.com/v1 ServiceMonitor API "
            "is not installed; the webserver stays scrapable through its metrics port and pod annotations"
        )
        events = (Event("Warning", v.EVENT_SERVICE_MONITOR_UNAVAILABLE, message),)
    return Found(found, events=events, status={"metrics": {"serviceMonitor": state}})


def exposure(kube: Api, wf: Workflow, previous: Previous) -> Found[bool]:
    """Whether the Gateway API's HTTPRoute exists; Warning Events when an HTTPRoute is asked for but cannot be
    made, and when the UI is exposed (Ingress or HTTPRoute) without authentication in front of it."""
    before = previous.get("exposure") or {}
    route_before = before.get("httpRoute") or "Disabled"
    spec = wf.spec
    try:
        found = kube.has_api(*exposure_render.HTTP_ROUTE_API)
    except ApiError:
        found = route_before == "Applied"
        route = route_before
    else:
        route = "Disabled" if not spec.http_route.enabled else ("Applied" if found else "CRDMissing")
    events: list[Event] = []
    if route == "CRDMissing" and route_before != route:
        message = (
            "httpRoute.enabled is true but the gateway.networking.k8s.io/v1 HTTPRoute API is not installed; "
            "the webserver is reachable only inside the cluster (or through spec.ingress)"
        )
        events.append(Event("Warning", v.EVENT_HTTP_ROUTE_UNAVAILABLE, message))
    exposed = exposure_render.exposed(wf, found)
    unauthenticated = bool(exposed) and not exposure_render.authenticated(wf)
    if unauthenticated and not before.get("unauthenticated"):
        message = (
            "the UI is exposed without authentication: anyone who reaches the "
            f"{' and '.join(exposed)} can read and launch runs; set spec.auth or protect it at the proxy "
            "(docs/production.md)"
        )
        events.append(Event("Warning", v.EVENT_EXPOSED_WITHOUT_AUTHENTICATION, message))
    status = {"exposure": {"httpRoute": route, "unauthenticated": unauthenticated}}
    return Found(found, events=tuple(events), status=status)


# -- storage
def storage(kube: Api, wf: Workflow) -> Found[Problem | None]:
    """Check (or create once) the storage Secret and copy it into another run namespace."""
    secret = storage_secret(kube, wf)
    problem, live = secret.value
    writes = secret.writes
    if problem is None and live is not None:
        missing = [k for k in pg_render.SECRET_KEYS if k not in (live.get("data") or {})]
        bad = [] if missing or wf.spec.storage.postgres.is_managed else storage_values(live["data"])
        where = f"{SECRET_NAME_FIELD}: Secret {wf.postgres_secret!r}"
        if missing:
            message = f"{where} lacks keys: {', '.join(missing)}"
            problem = Problem(v.STORAGE_SECRET_INVALID, message)
        elif bad:
            problem = Problem(v.STORAGE_SECRET_INVALID, f"{where}: {'; '.join(bad)}")
        elif wf.run_namespace != wf.namespace:
            writes += apply_child(kube, pg_render.run_secret_copy(wf, live["data"]), wf)[0]
    return Found(problem, writes)


SECRET_NAME_FIELD = "spec.storage.postgres.secretName"


def storage_values(data: Mapping[str, str]) -> list[str]:
    """What is wrong with the storage Secret's values, naming the keys and never the values."""
    values: dict[str, str] = {}
    for key in pg_render.SECRET_KEYS:
        try:
            values[key] = base64.b64decode(data[key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            values[key] = "\x00"  # not text: reported as a control character below
    problems = []
    for key in ("host", "user", "database"):
        if not values[key]:
            problems.append(f"key {key} is empty")
        elif any(ch.isspace() or not ch.isprintable() for ch in values[key]):
            problems.append(f"key {key} holds spaces or control characters (a trailing newline?)")
    port = values["port"]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        problems.append("key port is not a port number (1-65535)")
    return problems


class Referenced(NamedTuple):
    """What the Dagster pods read from objects the spec names: what is missing, a checksum of the content."""

    problem: Problem | None
    # By component: a checksum of the values its pods read (spec-level env and its own); never a value itself.
    checksums: dict[str, str]


def references(kube: Api, wf: Workflow) -> Found[Referenced]:
    """The Secrets, ConfigMaps and ServiceAccount the spec names for the Dagster pods: without them no pod
    starts (the kubelet refuses a missing env source, the ReplicaSet a missing ServiceAccount), and nothing
    else would say why. Optional sources may be missing. The content a Deployment's pods read (a key of
    valueFrom, every key of envFrom, the keys of the secretName storage Secret) goes into a checksum per
    component: pods read env only when they start, so a content change must roll them. The generated storage
    Secret is left out (created once, never rotated by the operator); dbt and run pods are not Deployments."""
    spec = wf.spec
    missing: list[str] = []
    cache: dict[tuple[str, str], Obj | None] = {}

    def lookup(kind: str, name: str) -> Obj | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = kube.get(("v1", kind, wf.namespace, name))
        return cache[(kind, name)]

    def values(obj: Obj | None) -> dict[str, str]:
        return {**((obj or {}).get("data") or {}), **((obj or {}).get("binaryData") or {})}

    # Spec-level env, then each component's (run pods in another namespace are not looked at here).
    env_lists = [
        ("spec", spec.env, spec.env_from),
        *(
            (f"spec.{field}", settings.env, settings.env_from)
            for field, settings in (
                ("webserver", spec.webserver),
                ("daemon", spec.daemon),
            )
        ),
        *(
            (field, settings.env, settings.env_from)
            for loc in wf.locations
            for field, settings in ((loc.field, loc.server), (loc.dbt_field, loc.dbt))
        ),
    ]
    if wf.run_namespace == wf.namespace:
        runs = spec.run_launcher.runs
        env_lists.append(("spec.runLauncher.runs", runs.env, runs.env_from))
    content: dict[str, list[Any]] = {}  # by env list: what its pods read
    for prefix, env, env_from in env_lists:
        read = content.setdefault(prefix, [])
        for i, var in enumerate(env):
            source = var.value_from
            for kind, selector, field in (
                ("Secret", source.secret_key_ref if source else None, "secretKeyRef"),
                ("ConfigMap", source.config_map_key_ref if source else None, "configMapKeyRef"),
            ):
                if selector is None:
                    continue
                obj = lookup(kind, selector.name)
                read.append([kind, selector.name, selector.key, values(obj).get(selector.key)])
                if selector.optional:
                    continue
                where = f"{prefix}.env[{i}].valueFrom.{field}"
                if obj is None:
                    missing.append(f"{where}: {kind} {selector.name!r} not found")
                elif selector.key not in values(obj):
                    missing.append(f"{where}: {kind} {selector.name!r} has no key {selector.key!r}")
        for i, source_of in enumerate(env_from):
            for kind, ref, field in (
                ("Secret", source_of.secret_ref, "secretRef"),
                ("ConfigMap", source_of.config_map_ref, "configMapRef"),
            ):
                if ref is None:
                    continue
                obj = lookup(kind, ref.name)
                read.append([kind, ref.name, values(obj) if obj is not None else None])
                if not ref.optional and obj is None:
                    missing.append(f"{prefix}.envFrom[{i}].{field}: {kind} {ref.name!r} not found")
    if spec.storage.postgres.secret_name:
        name = spec.storage.postgres.secret_name
        storage = values(lookup("Secret", name))
        content["spec"].append(["Secret", name, [storage.get(k) for k in pg_render.SECRET_KEYS]])
    s3 = spec.s3_logs
    if s3 is not None and s3.secret_name:
        found = lookup("Secret", s3.secret_name)
        content["spec"].append(["Secret", s3.secret_name, [values(found).get(k) for k in m.S3_SECRET_KEYS]])
        lacking = [k for k in m.S3_SECRET_KEYS if k not in values(found)]
        if found is None:
            missing.append(f"spec.computeLogs.s3.secretName: Secret {s3.secret_name!r} not found")
        elif lacking:
            missing.append(
                f"spec.computeLogs.s3.secretName: Secret {s3.secret_name!r} has no key {', '.join(lacking)}"
            )
    if spec.auth.enabled and spec.auth.secret_name:
        name = spec.auth.secret_name
        auth = lookup("Secret", name)
        content["spec.auth"] = [["Secret", name, [values(auth).get(k) for k in m.AUTH_SECRET_KEYS]]]
        absent_keys = [k for k in m.AUTH_SECRET_KEYS if k not in values(auth)]
        if auth is None:
            missing.append(f"spec.auth.secretName: Secret {name!r} not found")
        elif absent_keys:
            missing.append(f"spec.auth.secretName: Secret {name!r} has no key {', '.join(absent_keys)}")
    account = spec.service_account_name
    if account and lookup("ServiceAccount", account) is None:
        missing.append(f"spec.serviceAccountName: ServiceAccount {account!r} not found")
    checksums = {}
    for component, field in (
        (v.WEBSERVER, "spec.webserver"),
        (v.DAEMON, "spec.daemon"),
        *((loc.key, loc.field) for loc in wf.locations),
    ):
        read = [content["spec"], content[field]]
        if component == v.WEBSERVER and spec.webserver.read_only.enabled and any(read):
            checksums[v.WEBSERVER_READ_ONLY] = digest([wf.uid, read])  # the same, without the auth Secret
        if component == v.WEBSERVER and content.get("spec.auth"):
            read.append(content["spec.auth"])
        if any(read):
            checksums[component] = digest([wf.uid, read])
    problem = Problem(v.REFERENCE_NOT_FOUND, "; ".join(missing)) if missing else None
    return Found(Referenced(problem, checksums))


def storage_secret(kube: Api, wf: Workflow) -> Found[tuple[Problem | None, Obj | None]]:
    """The live storage Secret; the generated one is created once and never overwritten."""
    pg = wf.spec.storage.postgres
    ref: Ref = ("v1", "Secret", wf.namespace, wf.postgres_secret)
    live = kube.get(ref)
    if not pg.is_managed:
        if live is None:
            message = f"{SECRET_NAME_FIELD}: Secret {wf.postgres_secret!r} not found"
            return Found((Problem(v.STORAGE_SECRET_INVALID, message), None))
        return Found((None, live))
    if live is None:
        claim = pg_render.claim_name(wf)
        if kube.get(("v1", "PersistentVolumeClaim", wf.namespace, claim)) is not None:
            # A new password would not open the existing database: never regenerate over data.
            message = (
                f"Secret {wf.postgres_secret!r} (the managed PostgreSQL password) is missing while "
                f"volume {claim!r} still holds the database; a new password would not match it. "
                f"Restore the Secret (keys {', '.join(pg_render.SECRET_KEYS)}), or delete the PVC to start "
                "with an empty database"
            )
            return Found((Problem(v.STORAGE_SECRET_LOST, message), None))
        created = kube.create(pg_render.secret(wf, secrets.token_urlsafe(24)))
        return Found((None, kube.get(ref)), int(created))
    # deletionPolicy decides whether the Secret goes with the CR; it may change after creation.
    owned = any(o.get("uid") == wf.uid for o in live["metadata"].get("ownerReferences") or [])
    if owned == (pg.deletion_policy == "Delete"):
        return Found((None, live))
    kube.merge_patch(ref, {"metadata": {"ownerReferences": None if owned else [wf.owner_reference()]}})
    return Found((None, live), 1)


# -- children
def apply_child(kube: Api, obj: Obj, wf: Workflow) -> tuple[int, Obj]:
    """apply(); a write in another runLauncher.namespace that fails (it does not exist, no rights there)
    names that field first, a pod template the API server refuses names its podOverrides."""
    try:
        return apply(kube, obj)
    except ApiError as exc:
        where = obj["metadata"].get("namespace")
        if where == wf.namespace or where != wf.run_namespace:
            raise blame_overrides(exc, obj, wf) from None
        raise ApiError(exc.verb, exc.code, f"spec.runLauncher.namespace {where!r}: {exc.reason}") from None


def blame_overrides(exc: ApiError, obj: Obj, wf: Workflow) -> ApiError:
    """A workload the API server refuses as invalid (422) whose pod template has podOverrides merged in:
    the message names that field first (the operator judged the merge, the server found more)."""
    spec = wf.spec
    labels = obj["metadata"].get("labels") or {}
    fields: dict[str, tuple[str, m.PodSettings]] = {
        v.WEBSERVER: ("spec.webserver", spec.webserver),
        v.DAEMON: ("spec.daemon", spec.daemon),
    }
    for loc in wf.locations:
        if labels.get(names.LOCATION_LABEL, c.DEFAULT_CODE_LOCATION_NAME) == loc.name:
            fields[loc.component] = (loc.field, loc.server)
            fields[v.DBT_COMPILE] = (loc.dbt_field, loc.dbt)
    field, settings = fields.get(labels.get(c.LABEL_COMPONENT, ""), ("", None))
    if exc.code != 422 or obj["kind"] not in ("Deployment", "Job") or settings is None:
        return exc
    if not settings.pod_overrides:
        return exc
    return ApiError(exc.verb, exc.code, f"{field}.podOverrides (merged into the pod template): {exc.reason}")


def children(kube: Api, desired: Desired, wf: Workflow) -> Found[dict[str, Obj]]:
    """Apply every child that does not wait for dbt; returns the live workloads by component."""
    writes = 0
    workloads: dict[str, Obj] = {}
    for obj in desired.objects:
        written, live = apply_child(kube, obj, wf)
        writes += written
        if obj["kind"] in ("Deployment", "StatefulSet"):
            workloads[obj["metadata"]["labels"].get(c.LABEL_COMPONENT, "")] = live
    return Found(workloads, writes)


def absent(kube: Api, refs: list[Ref]) -> Found[None]:
    """Delete children the spec no longer wants."""
    writes = 0
    for ref in refs:
        if kube.get(ref) is not None:
            writes += int(kube.delete(ref))
    return Found(None, writes)


# -- dbt compile, then the code server
def dbt_compile(
    kube: Api, wf: Workflow, job: Obj | None, previous: Previous, loc: Location | None = None
) -> Found[Compile]:
    """Run a location's compile Job once per input hash; its code server may roll only after it succeeded.
    `previous` is the location's bookkeeping (location_previous)."""
    loc = loc or wf.locations[0]
    if job is None:
        return Found(Compile(st.DbtObservation("Disabled"), True))
    hash_ = dbt_render.hash_of(job)
    name = job["metadata"]["name"]
    recorded = previous.get("dbt") or {}
    status = {"dbt": {"jobName": name}}  # the Job for the current inputs, whatever its outcome
    live = kube.get(ref_of(job))
    suspended = wf.spec.suspend
    if live is None and recorded.get("specHash") == hash_:
        when = recorded.get("lastSuccessTime")
        obs = st.DbtObservation("Succeeded", name, hash_, v.SUCCEEDED, "dbt project compiled", when)
        return Found(Compile(obs, True), status=status)
    if live is None and suspended:
        msg = "suspended: the dbt compile waits for spec.suspend=false"
        return Found(
            Compile(st.DbtObservation("Pending", name, hash_, v.SUSPENDED, msg), True), status=status
        )
    if live is None:
        try:
            created = kube.create(job)
        except ApiError as exc:
            raise blame_overrides(exc, job, wf) from None
        what = "the dbt project" + ("" if loc.is_default else f" of code location {loc.name}")
        started = Event("Normal", v.EVENT_DBT_COMPILE_STARTED, f"Job {name} compiles {what}")
        obs = st.DbtObservation("Running", name, hash_, v.RUNNING, f"Job {name} is compiling the dbt project")
        return Found(Compile(obs, False), int(created), (started,), status)
    obs = st.job_observation(live, hash_, name)
    if obs.state == "Failed":
        obs = dataclasses.replace(obs, message=f"{obs.message}; compiled: {dbt_inputs(wf, loc)}")
    if obs.state != "Succeeded":
        return Found(Compile(obs, suspended), status=status)
    deleted = superseded_jobs(kube, wf, name, loc)
    status = {"dbt": {"specHash": hash_, "lastSuccessTime": obs.completion_time, "jobName": name}}
    return Found(Compile(obs, True), deleted.writes, status=status)


def dbt_inputs(wf: Workflow, loc: Location | None = None) -> str:
    """The spec fields a failed compile ran with, for the message that says what to check."""
    loc = loc or wf.locations[0]
    dbt, where = loc.dbt, loc.dbt_field
    fields = [f"{where}.projectDir {dbt.project_dir}"]
    if dbt.profiles_dir:
        fields.append(f"{where}.profilesDir {dbt.profiles_dir}")
    if dbt.target:
        fields.append(f"{where}.target {dbt.target}")
    if not wf.spec.code_locations:
        image = "spec.codeServer.image" if wf.spec.code_server.image else "spec.image"
    else:
        image = f"{loc.field}.image"
    return ", ".join([*fields, f"{image} {loc.image}"])


def superseded_jobs(kube: Api, wf: Workflow, keep: str, loc: Location | None = None) -> Found[None]:
    """Delete the location's compile Jobs of older inputs once the current one succeeded."""
    loc = loc or wf.locations[0]
    selector = f"{c.LABEL_INSTANCE}={wf.labels(dbt_render.COMPONENT)[c.LABEL_INSTANCE]}"
    selector += f",{c.LABEL_COMPONENT}={dbt_render.COMPONENT}"
    writes = 0
    for old in kube.list("batch/v1", "Job", wf.namespace, selector):
        # phlo's Jobs carry no location label (as before codeLocations existed), another location's its name.
        owner = (old["metadata"].get("labels") or {}).get(names.LOCATION_LABEL, c.DEFAULT_CODE_LOCATION_NAME)
        if old["metadata"]["name"] != keep and owner == loc.name:
            writes += int(kube.delete(ref_of({**old, "apiVersion": "batch/v1", "kind": "Job"})))
    return Found(None, writes)


def gone_location_jobs(kube: Api, wf: Workflow, previous: Previous) -> Found[None]:
    """The dbt-compile Jobs of code locations status lists and the spec no longer has (their Deployment,
    Service, NetworkPolicy and PDB go with the absent refs the renderer lists)."""
    current = {loc.name for loc in wf.locations}
    gone = {str(e.get("name")) for e in previous.get("codeLocations") or []} - current
    if not gone:
        return Found(None)
    selector = f"{c.LABEL_INSTANCE}={wf.labels(dbt_render.COMPONENT)[c.LABEL_INSTANCE]}"
    selector += f",{c.LABEL_COMPONENT}={dbt_render.COMPONENT}"
    writes = 0
    for job in kube.list("batch/v1", "Job", wf.namespace, selector):
        owner = (job["metadata"].get("labels") or {}).get(names.LOCATION_LABEL, c.DEFAULT_CODE_LOCATION_NAME)
        if owner in gone:
            writes += int(kube.delete(ref_of({**job, "apiVersion": "batch/v1", "kind": "Job"})))
    return Found(None, writes)


def location_previous(previous: Previous, loc: Location) -> Previous:
    """A location's bookkeeping as the steps read it ({dbt, codeServer}): phlo's is status.dbt and
    status.codeServer (as before codeLocations existed), another's its status.codeLocations entry."""
    if loc.is_default:
        return previous
    entries: list[Obj] = list(previous.get("codeLocations") or [])
    entry: Obj = next((e for e in entries if e.get("name") == loc.name), {})
    server = {k: entry[k] for k in ("templateHash", "reloadedHash") if entry.get(k)}
    return {"dbt": entry.get("dbt") or {}, "codeServer": server}


def code_server(
    kube: Api,
    wf: Workflow,
    desired: Obj,
    template_hash: str,
    may_roll: bool,
    previous: Previous,
    loc: Location | None = None,
) -> Found[Obj | None]:
    """Apply a location's code-server Deployment when its dbt allows it, else only read the one that keeps
    serving."""
    loc = loc or wf.locations[0]
    if not may_roll:
        return Found(kube.get(ref_of(desired)))
    try:
        written, live = apply(kube, desired)
    except ApiError as exc:
        raise blame_overrides(exc, desired, wf) from None
    before = (previous.get("codeServer") or {}).get("templateHash")
    events: tuple[Event, ...] = ()
    if written and before and before != template_hash:
        what = "" if loc.is_default else f" of code location {loc.name}"
        events = (
            Event("Normal", v.EVENT_CODE_SERVER_ROLLOUT, f"rolling out a new code-server template{what}"),
        )
    return Found(live or None, written, events, {"codeServer": {"templateHash": template_hash}})


def reload_location(
    wf: Workflow,
    live: Obj | None,
    template_hash: str,
    previous: Previous,
    reloader: Reloader,
    loc: Location | None = None,
) -> Found[None]:
    """After a completed rollout of a location's code server, ask the webserver to reload that location only
    (once per template)."""
    loc = loc or wf.locations[0]
    reloaded = (previous.get("codeServer") or {}).get("reloadedHash")
    if reloaded == template_hash or not st.deployment_check(live, wf.spec.suspend).ok:
        return Found(None)
    status = {"codeServer": {"reloadedHash": template_hash}}
    if reloaded is None:
        return Found(None, status=status)  # first rollout: the webserver loads the location when it starts
    what = "the code location" if loc.is_default else f"code location {loc.name}"
    try:
        reloader(webserver_base(wf.operator_url), loc.name)
    except ReloadFailed as exc:
        failed = Event("Warning", v.EVENT_RELOAD_FAILED, f"{what} reload failed: {exc}")
        return Found(None, events=(failed,), status=status)
    done = Event("Normal", v.EVENT_CODE_LOCATION_RELOADED, f"webserver reloaded {what}")
    return Found(None, events=(done,), status=status)


def code_location(
    wf: Workflow,
    webserver: Obj | None,
    code_server: Obj | None,
    prober: Prober,
    reloader: Reloader,
    server_id: str | None = None,
    loc: Location | None = None,
) -> Found[st.Check]:
    """Ready means usable: once the pods are available, ask the webserver whether it loaded the code
    location (a run launched before that fails with PipelineNotFoundError). A location whose load failed
    (the webserver started before the code server answered) is reloaded; the next pass looks again."""
    if not (st.deployment_check(webserver).ok and st.deployment_check(code_server).ok):
        return Found(st.Check(False, v.WAITING_FOR_PODS, "waiting for the webserver and code-server pods"))
    name = (loc or wf.locations[0]).name
    base = webserver_base(wf.operator_url)
    state = prober(base, name, server_id)
    if state.reason in (v.LOAD_ERROR, v.OUTDATED):
        try:
            reloader(base, name)
        except ReloadFailed as exc:
            log.info("reload of %s/%s after a load error failed: %s", wf.namespace, wf.name, exc)
    return Found(st.Check(state.loaded, state.reason, state.message))


def delete_run_jobs(kube: Api, cr_name: str, namespaces: set[str]) -> int:
    """Delete the Dagster run Jobs this workflow launched (labelled by its run_k8s_config); their pods
    follow by garbage collection. Returns how many were deleted."""
    selector = ",".join(f"{k}={val}" for k, val in names.selector(cr_name, v.RUN).items())
    deleted = 0
    for namespace in sorted(namespaces):
        for job in kube.list("batch/v1", "Job", namespace, selector):
            # List items carry no apiVersion/kind of their own.
            deleted += kube.delete(
                ("batch/v1", "Job", namespace, job["metadata"]["name"]), propagation="Background"
            )
    return deleted


def server_id_of(deployment: Obj | None) -> str | None:
    """The --fixed-server-id the code-server Deployment runs with (one per code version)."""
    for container in (
        (deployment or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    ) or []:
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if "--fixed-server-id" in command[:-1]:
            return str(command[command.index("--fixed-server-id") + 1])
    return None


# -- run namespaces
# What a PhloWorkflow keeps in another runLauncher.namespace, by child suffix.
RUN_NAMESPACE_OBJECTS = (
    ("v1", "ConfigMap", "instance"),
    ("v1", "Secret", RUN_SECRET_SUFFIX),
    ("rbac.authorization.k8s.io/v1", "Role", "run-launcher"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "run-launcher"),
)


def delete_run_objects(kube: Api, cr_name: str, run_namespace: str) -> int:
    """Delete this workflow's objects in a run namespace it no longer uses; returns how many existed."""
    deleted = 0
    for api_version, kind, suffix in RUN_NAMESPACE_OBJECTS:
        deleted += kube.delete((api_version, kind, run_namespace, names.child(cr_name, suffix)))
    return deleted


def old_run_namespace(kube: Api, wf: Workflow, previous: Previous) -> Found[None]:
    """runLauncher.namespace changed: what the old one held (unowned) is deleted, then status moves on."""
    old = (previous.get("runLauncher") or {}).get("namespace")
    status = {"runLauncher": {"namespace": wf.run_namespace}}
    if not old or old in (wf.run_namespace, wf.namespace):
        return Found(None, status=status)
    try:
        return Found(None, delete_run_objects(kube, wf.name, old), status=status)
    except ApiError as exc:  # e.g. no rights there any more: say so once, do not block the workflow
        message = f"could not delete this workflow's objects in the old run namespace {old}: {exc}"
        failed = Event("Warning", v.EVENT_RUN_NAMESPACE_CLEANUP_FAILED, message)
        return Found(None, events=(failed,), status=status)


# -- the instance: the Dagster version the webserver and daemon run, migrated before they move to a new one
@dataclasses.dataclass(frozen=True)
class Upgrade:
    """Which image the webserver and daemon run this pass, whether spec.image waits, and the Migrated
    condition (status True, False or Unknown)."""

    image: str
    held: bool
    status: str
    reason: str
    message: str
    problem: str | None = None  # Degraded's message (the reason is `reason`)
    migrating: bool = False  # Progressing


UNKNOWN_VERSION = "unknown"


def job_report(kube: Api, namespace: str, name: str) -> dict[str, str]:
    """What a Job's newest pod wrote to its termination message (a JSON object; {} when none)."""
    pods = kube.list("v1", "Pod", namespace, f"batch.kubernetes.io/job-name={name}")
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(pods):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                return instance_render.report(message)
    return {}


def _job_state(kube: Api, wf: Workflow, job: Obj) -> tuple[str, Obj | None, int, tuple[Event, ...]]:
    """Create the Job unless it exists (not while suspended); its state: Succeeded, Failed, Running or
    Pending."""
    name = job["metadata"]["name"]
    live = kube.get(ref_of(job))
    if live is None:
        if wf.spec.suspend:
            return "Pending", None, 0, ()
        try:
            created = kube.create(job)
        except ApiError as exc:
            raise blame_overrides(exc, job, wf) from None
        return "Running", None, int(created), ()
    return st.job_observation(live, "", name).state, live, 0, ()


def _failure(report: Mapping[str, str], live: Obj | None, name: str) -> str:
    said = report.get("error") or report.get("message")
    if said:
        return f"Job {name} failed: {said}"
    return st.job_observation(live, "", name).message


def instance_upgrade(kube: Api, wf: Workflow, shared: Any, previous: Previous) -> Found[Upgrade]:
    """The webserver and daemon run status.instance.image. A new spec.image moves them only after the version
    gate read its Dagster version and, when that changed (or was never read), a migrate Job succeeded in it.
    A new workflow (nothing recorded) takes spec.image at once: its database is created at that schema."""
    target = wf.spec.image
    rec: dict[str, Any] = dict(previous.get("instance") or {})
    first = not rec.get("image")
    if first:
        rec = {"image": target}
    approved = str(rec["image"])
    writes = 0
    if approved == target:
        status = {"instance": rec} if first else {}
        version = rec.get("dagsterVersion")
        if not version:  # learn the running image's version (no migration: nothing older to compare with)
            gate = instance_render.version_gate_job(wf, target)
            state, _live, writes, _ = _job_state(kube, wf, gate)
            report = job_report(kube, wf.namespace, gate["metadata"]["name"]) if state == "Succeeded" else {}
            if state == "Succeeded":  # a gate that could not say (no termination message): "unknown"
                rec = {**rec, "dagsterVersion": report.get("dagsterVersion") or UNKNOWN_VERSION}
                rec.update({k: report[k] for k in ("schemaHead",) if report.get(k)})
                status, version = {"instance": rec}, rec["dagsterVersion"]
        return Found(_settled(target, rec, version), writes, status=status)
    # spec.image changed: read its Dagster version first.
    gate = instance_render.version_gate_job(wf, target)
    gate_name = gate["metadata"]["name"]
    state, live, writes, _ = _job_state(kube, wf, gate)
    held = f"the webserver and daemon keep {approved}"
    if state in ("Pending", "Running"):
        message = f"Job {gate_name} reads the Dagster version of {target}; {held}"
        return Found(Upgrade(approved, True, "Unknown", v.READING_VERSION, message, migrating=True), writes)
    report = job_report(kube, wf.namespace, gate_name)
    new = report.get("dagsterVersion") or UNKNOWN_VERSION
    if state == "Failed":
        message = f"{_failure(report, live, gate_name)}; {held}"
        return Found(Upgrade(approved, True, "False", v.VERSION_GATE_FAILED, message, message), writes)
    old = rec.get("dagsterVersion")  # unknown on both sides (no termination messages): the same
    head = {"schemaHead": report["schemaHead"]} if report.get("schemaHead") else {}
    if old and old == new:  # the same Dagster: nothing to migrate, move at once
        rec = {**rec, "image": target, **head}
        return Found(_settled(target, rec, new), writes, status={"instance": rec})
    job = instance_render.migrate_job(wf, shared, target, new)
    name = job["metadata"]["name"]
    state, live, created, _ = _job_state(kube, wf, job)
    writes += created
    was = old or "an unknown version"
    if state in ("Pending", "Running"):
        events: tuple[Event, ...] = ()
        if created:
            text = f"Job {name} migrates the instance database from Dagster {was} to {new}"
            events = (Event("Normal", v.EVENT_INSTANCE_MIGRATION_STARTED, text),)
        message = f"Job {name} runs `dagster instance migrate` for Dagster {new}; {held}"
        return Found(Upgrade(approved, True, "Unknown", v.MIGRATING, message, migrating=True), writes, events)
    report = job_report(kube, wf.namespace, name)
    if state == "Failed":
        message = f"{_failure(report, live, name)}; {held} (Dagster {was})"
        events = ()
        if previous_reason(previous) != v.MIGRATION_FAILED:
            events = (Event("Warning", v.EVENT_INSTANCE_MIGRATION_FAILED, message),)
        return Found(Upgrade(approved, True, "False", v.MIGRATION_FAILED, message, message), writes, events)
    rec = {"image": target, "dagsterVersion": new, "migrateJob": name, **head}
    if old:
        rec["migratedFrom"] = old
    if report.get("schemaVersion"):
        rec["schemaVersion"] = report["schemaVersion"]
    text = f"Job {name} migrated the instance database from Dagster {was} to {new}"
    if rec.get("schemaVersion"):
        text += f" (schema {rec['schemaVersion']})"
    done = Event("Normal", v.EVENT_INSTANCE_MIGRATED, f"{text}; the webserver and daemon move to {target}")
    return Found(_settled(target, rec, new), writes, (done,), {"instance": rec})


def previous_reason(previous: Previous) -> str | None:
    for cond in previous.get("conditions") or []:
        if cond.get("type") == v.MIGRATED:
            return str(cond.get("reason"))
    return None


def _settled(image: str, rec: Mapping[str, Any], version: str | None) -> Upgrade:
    """Nothing waits: Migrated from what status.instance recorded."""
    if not version:
        message = f"the Dagster version of {image} is not read yet (a new database needs no migration)"
        return Upgrade(image, False, "True", v.UP_TO_DATE, message)
    schema = f" (schema {rec['schemaVersion']})" if rec.get("schemaVersion") else ""
    if rec.get("migrateJob"):
        was = rec.get("migratedFrom") or "an unknown version"
        message = f"Job {rec['migrateJob']} migrated the database from Dagster {was} to {version}{schema}"
        return Upgrade(image, False, "True", v.INSTANCE_MIGRATED, message)
    return Upgrade(
        image, False, "True", v.UP_TO_DATE, f"the database is at Dagster {version}'s schema{schema}"
    )
