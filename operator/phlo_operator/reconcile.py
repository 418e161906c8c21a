"""One reconcile pass: parse -> render -> apply what differs -> observe -> status and Events. Level-based:
any pass can be killed and re-run; an unchanged PhloWorkflow costs reads only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any

from phlo_dagster import constants as c
from phlo_operator import model as m
from phlo_operator import names
from phlo_operator import status as st
from phlo_operator.apply import ApiError, Kube, Ref, ref_of
from phlo_operator.reload import ReloadFailed, reload_location, webserver_base
from phlo_operator.render import Facts, Workflow, render_all
from phlo_operator.render import components as comp
from phlo_operator.render import dbt as dbt_render
from phlo_operator.render import postgres as pg_render
from phlo_operator.render.workflow import RUN_SECRET_SUFFIX, digest

log = logging.getLogger(__name__)
SECRET_KEYS = pg_render.SECRET_KEYS
INVALID_SECRET = "StorageSecretInvalid"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Result:
    outcome: str  # ok | invalid | error | gone
    conditions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    writes: int = 0


class Reconciler:
    """Holds the API client and side-effect hooks; each call to reconcile() is independent."""

    def __init__(
        self,
        kube: Kube,
        clock: Callable[[], str] = now_rfc3339,
        reloader: Callable[[str, str], str] = reload_location,
    ) -> None:
        self.kube, self.clock, self.reloader = kube, clock, reloader

    def reconcile(self, namespace: str, name: str) -> Result:
        cr = self.kube.get((m.API_VERSION, m.KIND, namespace, name))
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return Result("gone")
        return _Pass(self, cr).run()

    def cleanup(
        self, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None
    ) -> None:
        """Objects in another run namespace cannot carry an owner reference; delete them on CR deletion
        (in the spec's run namespace and the last one status recorded, even if the spec is now invalid)."""
        run_namespaces = {((status or {}).get("runLauncher") or {}).get("namespace")}
        try:
            run_namespaces.add(m.parse_spec(spec).run_launcher.namespace)
        except m.InvalidSpec:
            pass
        for run_ns in run_namespaces - {None, namespace}:
            try:
                delete_run_objects(self.kube, name, str(run_ns))
            except ApiError as exc:
                if exc.code not in (401, 403):
                    raise  # transient: kopf retries the deletion handler
                # No rights there (any more): retrying forever would block the CR's deletion.
                log.warning("cannot clean up run namespace %s of %s/%s: %s", run_ns, namespace, name, exc)


# What a PhloWorkflow keeps in another runLauncher.namespace, by child suffix.
RUN_NAMESPACE_OBJECTS = (
    ("v1", "ConfigMap", "instance"),
    ("v1", "Secret", RUN_SECRET_SUFFIX),
    ("rbac.authorization.k8s.io/v1", "Role", "run-launcher"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "run-launcher"),
)


def delete_run_objects(kube: Kube, cr_name: str, run_namespace: str) -> int:
    """Delete this workflow's objects in a run namespace it no longer uses; returns how many existed."""
    deleted = 0
    for api_version, kind, suffix in RUN_NAMESPACE_OBJECTS:
        deleted += kube.delete((api_version, kind, run_namespace, names.child(cr_name, suffix)))
    return deleted


class _Pass:
    """State of one reconcile pass."""

    def __init__(self, owner: Reconciler, cr: dict[str, Any]) -> None:
        self.kube, self.clock, self.reloader = owner.kube, owner.clock, owner.reloader
        self.cr = cr
        meta = cr["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.generation = int(meta.get("generation", 1))
        self.previous: dict[str, Any] = dict(cr.get("status") or {})
        self.writes = 0
        self.events: list[tuple[str, str, str]] = []
        self.extra: dict[str, Any] = {}

    # -- entry
    def run(self) -> Result:
        try:
            spec = m.parse_spec(self.cr.get("spec") or {})
        except m.InvalidSpec as exc:
            obs = st.Observed(generation=self.generation, invalid=str(exc))
            return self._finish(obs, "invalid")
        wf = Workflow(
            name=self.name,
            namespace=self.namespace,
            uid=self.cr["metadata"]["uid"],
            spec=spec,
            generation=self.generation,
        )
        try:
            obs = self._converge(wf)
        except ApiError as exc:
            log.warning("reconcile %s/%s: %s", self.namespace, self.name, exc)
            self._report_api_error(exc)
            raise
        return self._finish(obs, "ok")

    # -- steps
    def _facts(self, wf: Workflow) -> Facts:
        hpa_targets: set[str] = set()
        try:
            for hpa in self.kube.list("autoscaling/v2", "HorizontalPodAutoscaler", wf.namespace):
                target = hpa.get("spec", {}).get("scaleTargetRef", {})
                if target.get("kind") == "Deployment":
                    hpa_targets.add(target.get("name", ""))
        except ApiError as exc:
            log.debug("cannot list HPAs: %s", exc)
        monitor_api = self._service_monitor_api(wf)
        return Facts(service_monitor_api=monitor_api, hpa_targets=frozenset(hpa_targets))

    def _service_monitor_api(self, wf: Workflow) -> bool:
        """Whether the ServiceMonitor API exists; a Warning Event when one is asked for but cannot be made."""
        before = (self.previous.get("metrics") or {}).get("serviceMonitor") or "Disabled"
        try:
            found = self.kube.has_api("monitoring.coreos.com/v1", "servicemonitors")
        except ApiError:
            self.extra["metrics"] = {"serviceMonitor": before}
            return before == "Applied"
        wanted = wf.spec.metrics.enabled and wf.spec.metrics.service_monitor.enabled
        state = "Disabled" if not wanted else ("Applied" if found else "CRDMissing")
        if state == "CRDMissing" and before != state:
            message = (
                "metrics.serviceMonitor.enabled is true but the monitoring.coreos.com/v1 ServiceMonitor API "
                "is not installed; the webserver stays scrapable through its metrics port and pod annotations"
            )
            self.events.append(("Warning", "ServiceMonitorUnavailable", message))
        self.extra["metrics"] = {"serviceMonitor": state}
        return found

    def _storage(self, wf: Workflow) -> tuple[str, str] | None:
        """Check (or create once) the storage Secret and copy it into another run namespace; returns a
        problem as (reason, message)."""
        problem, live = self._storage_secret(wf)
        if problem is None and live is not None:
            missing = [k for k in SECRET_KEYS if k not in (live.get("data") or {})]
            if missing:
                problem = INVALID_SECRET, f"Secret {wf.postgres_secret!r} lacks keys: {', '.join(missing)}"
            elif wf.run_namespace != wf.namespace:
                self._apply(pg_render.run_secret_copy(wf, live["data"]))
        return problem

    def _storage_secret(self, wf: Workflow) -> tuple[tuple[str, str] | None, dict[str, Any] | None]:
        """The live storage Secret; the generated one is created once and never overwritten."""
        pg = wf.spec.storage.postgres
        ref: Ref = ("v1", "Secret", wf.namespace, wf.postgres_secret)
        live = self.kube.get(ref)
        if not pg.is_managed:
            if live is None:
                return (
                    INVALID_SECRET,
                    f"Secret {wf.postgres_secret!r} (storage.postgres.secretName) not found",
                ), None
            return None, live
        if live is None:
            claim = pg_render.claim_name(wf)
            if self.kube.get(("v1", "PersistentVolumeClaim", wf.namespace, claim)) is not None:
                # A new password would not open the existing database: never regenerate over data.
                return (
                    "StorageSecretLost",
                    f"Secret {wf.postgres_secret!r} (the managed PostgreSQL password) is missing while "
                    f"volume {claim!r} still holds the database; a new password would not match it. "
                    f"Restore the Secret (keys {', '.join(SECRET_KEYS)}), or delete the PVC to start "
                    "with an empty database",
                ), None
            self._write(self.kube.create(pg_render.secret(wf, secrets.token_urlsafe(24))))
            return None, self.kube.get(ref)
        # deletionPolicy decides whether the Secret goes with the CR; it may change after creation.
        owned = any(o.get("uid") == wf.uid for o in live["metadata"].get("ownerReferences") or [])
        if owned != (pg.deletion_policy == "Delete"):
            owners = None if owned else [wf.owner_reference()]
            self.kube.merge_patch(ref, {"metadata": {"ownerReferences": owners}})
            self._write(True)
        return None, live

    def _apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        live = self.kube.get(ref_of(obj))
        if live and obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            # An HPA owns replicas: echo the live value so dropping the field never resets it to the default.
            obj = {**obj, "spec": {**obj["spec"], "replicas": live.get("spec", {}).get("replicas", 1)}}
        written, result = self.kube.apply(obj, live)
        self._write(written)
        return result

    def _write(self, written: bool) -> None:
        self.writes += int(written)

    def _converge(self, wf: Workflow) -> st.Observed:
        spec = wf.spec
        facts = self._facts(wf)
        storage_problem = self._storage(wf)
        desired = render_all(wf, facts)
        live: dict[str, dict[str, Any]] = {}
        for obj in desired.objects:
            result = self._apply(obj)
            component = obj["metadata"]["labels"].get(c.LABEL_COMPONENT, "")
            if obj["kind"] in ("Deployment", "StatefulSet"):
                live[component] = result
        for ref in desired.absent:
            if self.kube.get(ref) is not None:
                self._write(self.kube.delete(ref))

        dbt_obs, gate_open = self._dbt(wf, desired.dbt_job, desired.dbt_hash)
        cs_ref = ref_of(desired.code_server)
        template_hash = digest(desired.code_server["spec"]["template"])
        if gate_open:
            before = self.writes
            code_server = self._apply(desired.code_server)
            previous_hash = (self.previous.get("codeServer") or {}).get("templateHash")
            if self.writes > before and previous_hash and previous_hash != template_hash:
                self.events.append(("Normal", "CodeServerRollout", "rolling out a new code-server template"))
            self.extra.setdefault("codeServer", {})["templateHash"] = template_hash
            self._maybe_reload(wf, code_server, template_hash)
        else:
            code_server = self.kube.get(cs_ref) or {}
        self._leave_old_run_namespace(wf)
        return st.Observed(
            generation=self.generation,
            suspended=spec.suspend,
            deployments={
                comp.WEBSERVER: live.get(comp.WEBSERVER),
                comp.DAEMON: live.get(comp.DAEMON),
                comp.CODE_SERVER: code_server or None,
            },
            postgres=live.get(pg_render.COMPONENT),
            managed_postgres=spec.storage.postgres.is_managed,
            storage_problem=storage_problem[1] if storage_problem else None,
            storage_reason=storage_problem[0] if storage_problem else INVALID_SECRET,
            dbt=dbt_obs,
            code_server_gated=not gate_open,
            webserver_url=wf.webserver_url,
        )

    def _leave_old_run_namespace(self, wf: Workflow) -> None:
        """runLauncher.namespace changed: what the old one held (unowned) is deleted, then status moves on."""
        old = (self.previous.get("runLauncher") or {}).get("namespace")
        if old and old not in (wf.run_namespace, wf.namespace):
            try:
                self.writes += delete_run_objects(self.kube, wf.name, old)
            except ApiError as exc:  # e.g. no rights there any more: say so once, do not block the workflow
                message = f"could not delete this workflow's objects in the old run namespace {old}: {exc}"
                self.events.append(("Warning", "RunNamespaceCleanupFailed", message))
        self.extra["runLauncher"] = {"namespace": wf.run_namespace}

    def _dbt(
        self, wf: Workflow, job: dict[str, Any] | None, hash_: str | None
    ) -> tuple[st.DbtObservation, bool]:
        """Run the compile Job once per input hash; the code server may roll only after it succeeded."""
        if job is None or hash_ is None:
            return st.DbtObservation("Disabled"), True
        previous = self.previous.get("dbt") or {}
        name = job["metadata"]["name"]
        self.extra["dbt"] = {"jobName": name}  # the Job for the current inputs, whatever its outcome
        live = self.kube.get(ref_of(job))
        if live is None and previous.get("specHash") == hash_:
            when = previous.get("lastSuccessTime")
            return st.DbtObservation(
                "Succeeded", name, hash_, "Succeeded", "dbt project compiled", when
            ), True
        if live is None:
            if wf.spec.suspend:
                msg = "suspended: the dbt compile waits for spec.suspend=false"
                return st.DbtObservation("Pending", name, hash_, "Suspended", msg), True
            self._write(self.kube.create(job))
            self.events.append(("Normal", "DbtCompileStarted", f"Job {name} compiles the dbt project"))
            msg = f"Job {name} is compiling the dbt project"
            return st.DbtObservation("Running", name, hash_, "Running", msg), wf.spec.suspend
        obs = st.job_observation(live, hash_, name)
        if obs.state == "Succeeded":
            self.extra["dbt"] = {"specHash": hash_, "lastSuccessTime": obs.completion_time, "jobName": name}
            self._delete_old_jobs(wf, name)
            return obs, True
        return obs, wf.spec.suspend

    def _delete_old_jobs(self, wf: Workflow, keep: str) -> None:
        selector = f"{c.LABEL_INSTANCE}={wf.labels(dbt_render.COMPONENT)[c.LABEL_INSTANCE]}"
        selector += f",{c.LABEL_COMPONENT}={dbt_render.COMPONENT}"
        for old in self.kube.list("batch/v1", "Job", wf.namespace, selector):
            if old["metadata"]["name"] != keep:
                self._write(self.kube.delete(ref_of({**old, "apiVersion": "batch/v1", "kind": "Job"})))

    def _maybe_reload(self, wf: Workflow, code_server: dict[str, Any], template_hash: str) -> None:
        """After a completed code-server rollout, ask the webserver to reload (once per template)."""
        previous = (self.previous.get("codeServer") or {}).get("reloadedHash")
        if previous == template_hash or not st.deployment_check(code_server, wf.spec.suspend).ok:
            return
        self.extra.setdefault("codeServer", {})["reloadedHash"] = template_hash
        if previous is None:
            return  # first rollout: the webserver loads the location when it starts
        base = webserver_base(wf.webserver_url)
        try:
            self.reloader(base, c.DEFAULT_CODE_LOCATION_NAME)
        except ReloadFailed as exc:
            self.events.append(("Warning", "ReloadFailed", f"code location reload failed: {exc}"))
            return
        self.events.append(("Normal", "CodeLocationReloaded", "webserver reloaded the code location"))

    # -- status
    def _report_api_error(self, exc: ApiError) -> None:
        """Keep what was last observed, only mark Degraded: an API failure says nothing about the children."""
        degraded = {"type": "Degraded", "status": "True", "reason": "ApplyFailed", "message": str(exc)}
        kept = [c for c in self.previous.get("conditions", []) if c.get("type") != "Degraded"]
        plain = [{k: c[k] for k in ("type", "status", "reason", "message") if k in c} for c in kept]
        if not any(c.get("type") == "Ready" for c in kept):  # nothing observed yet: not Ready, say why
            plain.insert(0, {**degraded, "type": "Ready", "status": "False"})
        new = dict(self.previous)
        gen = self.previous.get("observedGeneration", self.generation)
        new["conditions"] = st.with_timestamps(
            [*plain, degraded], self.previous.get("conditions", []), gen, self.clock()
        )
        if new != self.previous:
            try:
                self.kube.patch_status(self.cr, new)
            except ApiError:
                return
            for _type, kind, reason, message in st.transitions(self.previous, new):
                self.kube.event(self.cr, kind, reason, message)

    def _finish(self, obs: st.Observed, outcome: str) -> Result:
        new = st.compute(obs, self.previous, self.clock(), self.extra)
        if new != self.previous:
            self.kube.patch_status(self.cr, new)
            self.writes += 1
        for _type, kind, reason, message in st.transitions(self.previous, new):
            self.events.append((kind, reason, message))
        for kind, reason, message in self.events:
            self.kube.event(self.cr, kind, reason, message)
        return Result(outcome, new["conditions"], self.writes)
