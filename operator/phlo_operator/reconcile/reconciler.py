"""One reconcile pass: parse -> the steps -> status and Events, reported once. Level-based: any pass can be
killed and re-run; an unchanged PhloWorkflow costs reads only."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from phlo_operator import model as m
from phlo_operator import status as st
from phlo_operator import vocabulary as v
from phlo_operator.apply import Api, ApiError
from phlo_operator.reconcile import steps
from phlo_operator.reconcile.steps import Ledger, Previous
from phlo_operator.reload import location_state, reload_location
from phlo_operator.render import Facts, Workflow, render_all
from phlo_operator.render import components as comp
from phlo_operator.render import postgres as pg_render
from phlo_operator.render.bundle import LocationDesired, shared
from phlo_operator.render.workflow import digest

log = logging.getLogger(__name__)


LOCATION_RECHECK_SECONDS = 3.0


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Result:
    outcome: str  # ok | invalid | error | gone
    conditions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    writes: int = 0
    # Look again after this many seconds though nothing in the cluster changed (the webserver loading code).
    requeue_after: float | None = None


class Reconciler:
    """Holds the API client and side-effect hooks; each call to reconcile() is independent."""

    def __init__(
        self,
        kube: Api,
        clock: Callable[[], str] = now_rfc3339,
        reloader: steps.Reloader = reload_location,
        prober: steps.Prober | None = location_state,
    ) -> None:
        """prober None: Ready does not wait for the webserver to report the code location loaded."""
        self.kube, self.clock, self.reloader, self.prober = kube, clock, reloader, prober

    def reconcile(self, namespace: str, name: str) -> Result:
        cr = self.kube.get((m.API_VERSION, m.KIND, namespace, name))
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return Result("gone")
        generation = int(cr["metadata"].get("generation", 1))
        ledger = Ledger()
        try:
            spec = m.parse_spec(cr.get("spec") or {})
            wf = Workflow(name, namespace, cr["metadata"]["uid"], spec, generation)
            render_all(wf)  # a podOverrides merge and dagster.yaml are judged here, before any write
        except m.InvalidSpec as exc:
            return self._report(cr, st.Observed(generation, invalid=str(exc)), ledger, "invalid")
        try:
            observed = self.converge(wf, dict(cr.get("status") or {}), ledger)
        except m.InvalidSpec as exc:  # found while rendering (e.g. Dagster refuses the merged dagster.yaml)
            return self._report(cr, st.Observed(generation, invalid=str(exc)), ledger, "invalid")
        except ApiError as exc:
            log.warning("reconcile %s/%s: %s", namespace, name, exc)
            with contextlib.suppress(ApiError):  # the status write failing too changes nothing: retried
                reported = self._report(cr, st.Observed(generation, apply_error=str(exc)), ledger, "error")
                exc.conditions = reported.conditions
            raise
        result = self._report(cr, observed, ledger, "ok")
        location = observed.code_location
        # Pods becoming available is a watch event; the webserver finishing a load is not: look again.
        if location is not None and not location.ok and location.reason != v.WAITING_FOR_PODS:
            result.requeue_after = LOCATION_RECHECK_SECONDS
        return result

    def converge(self, wf: Workflow, previous: Previous, ledger: Ledger) -> st.Observed:
        """What a pass does, in order. Each step returns what it found; the ledger keeps what it did."""
        kube, take = self.kube, ledger.take
        referenced = take(steps.references(kube, wf))
        missing = referenced.problem
        # Before anything rolls: which image the webserver and daemon run (a new Dagster migrates first).
        upgrade = take(steps.instance_upgrade(kube, wf, shared(wf, referenced.checksums), previous))
        facts = Facts(
            instance_image=upgrade.image,
            hpa_targets=take(steps.hpa_targets(kube, wf)),
            service_monitor_api=take(steps.service_monitor_api(kube, wf, previous)),
            http_route_api=take(steps.exposure(kube, wf, previous)),
            referenced_checksums=referenced.checksums,
            previous_locations=frozenset(e.get("name", "") for e in previous.get("codeLocations") or []),
        )
        desired = render_all(wf, facts)  # before any write: a spec the renderers refuse changes nothing
        storage = take(steps.storage(kube, wf))
        workloads = take(steps.children(kube, desired, wf))
        take(steps.absent(kube, desired.absent))
        take(steps.gone_location_jobs(kube, wf, previous))
        webserver = workloads.get(comp.WEBSERVER)
        # A code location on spec.image (phlo by default) waits with the webserver and daemon.
        held = wf.spec.image if upgrade.held else None
        locations = [self.location(wf, part, previous, webserver, ledger, held) for part in desired.locations]
        observed = tuple(obs for obs, _, _ in locations)
        take(steps.old_run_namespace(kube, wf, previous))
        asked = [(obs.name, obs.loaded) for obs in observed if obs.loaded is not None]
        return st.Observed(
            generation=wf.generation,
            suspended=wf.spec.suspend,
            deployments={
                comp.WEBSERVER: webserver,
                comp.DAEMON: workloads.get(comp.DAEMON),
                comp.CODE_SERVER: observed[0].deployment,
            },
            postgres=workloads.get(pg_render.COMPONENT),
            managed_postgres=wf.spec.storage.postgres.is_managed,
            storage_problem=storage.message if storage else None,
            storage_reason=storage.reason if storage else v.STORAGE_SECRET_INVALID,
            missing_reference=missing.message if missing else None,
            dbt=observed[0].dbt,
            code_server_gated=any(gated for _, gated, _ in locations),
            webserver_url=wf.webserver_url,
            code_location=st.combine(asked) if asked else None,
            locations=observed,
            code_locations=[entry for _, _, entry in locations],
            migration=st.Migration(upgrade.status, upgrade.reason, upgrade.message, upgrade.migrating),
            migration_problem=upgrade.problem,
        )

    def location(
        self,
        wf: Workflow,
        part: LocationDesired,
        previous: Previous,
        webserver: dict[str, Any] | None,
        ledger: Ledger,
        held_image: str | None = None,
    ) -> tuple[st.LocationObserved, bool, dict[str, Any]]:
        """One code location: its dbt compile, then its code server, its reload, whether it is loaded.
        Returns what was observed, whether its code server waits for dbt, and its status.codeLocations entry
        (which keeps its bookkeeping; phlo's is also status.dbt and status.codeServer, as before)."""
        kube, loc = self.kube, part.location
        mine = Ledger()
        take = mine.take
        before = steps.location_previous(previous, loc)
        dbt = take(steps.dbt_compile(kube, wf, part.dbt_job, before, loc))
        template_hash = digest(part.code_server["spec"]["template"])
        may_roll = dbt.code_server_may_roll and loc.image != held_image
        live = take(steps.code_server(kube, wf, part.code_server, template_hash, may_roll, before, loc))
        if may_roll:
            take(steps.reload_location(wf, live, template_hash, before, self.reloader, loc))
        loaded = None
        if self.prober is not None and not wf.spec.suspend:
            expected = steps.server_id_of(live)
            loaded = take(steps.code_location(wf, webserver, live, self.prober, self.reloader, expected, loc))
        ledger.writes += mine.writes
        ledger.events += mine.events
        if loc.is_default:
            for key, value in mine.status.items():
                ledger.status.setdefault(key, {}).update(value)
        server = {**(before.get("codeServer") or {}), **mine.status.get("codeServer", {})}
        entry: dict[str, Any] = {"name": loc.name, "image": loc.image}
        entry.update({k: server[k] for k in ("templateHash", "reloadedHash") if server.get(k)})
        entry["readyReplicas"] = int(((live or {}).get("status") or {}).get("readyReplicas") or 0)
        if loaded is not None:
            entry.update(loaded=loaded.ok, message=loaded.message)
        compiled = {**(before.get("dbt") or {}), **mine.status.get("dbt", {})}
        compiled = {k: val for k, val in compiled.items() if val}
        if compiled:
            entry["dbt"] = compiled
        return st.LocationObserved(loc.name, live, dbt.observation, loaded), not may_roll, entry

    def _report(self, cr: dict[str, Any], obs: st.Observed, ledger: Ledger, outcome: str) -> Result:
        """The one status writer, for every outcome: status from `obs`, then the pass's Events and the
        transitions. The pass's own Events go out even when the status write fails (which is raised)."""
        previous = dict(cr.get("status") or {})
        new = st.compute(obs, previous, self.clock(), ledger.status)
        events = list(ledger.events)
        try:
            if new != previous:
                self.kube.patch_status(cr, new)
                ledger.writes += 1
            events += [steps.Event(k, r, msg) for _t, k, r, msg in st.transitions(previous, new)]
        finally:
            for event in events:
                self.kube.event(cr, *event)
        return Result(outcome, new["conditions"], ledger.writes)

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
        # The Dagster run Jobs it launched (and through them their pods), wherever they run.
        jobs_in = {str(n) for n in run_namespaces if n} | {namespace}
        try:
            deleted = steps.delete_run_jobs(self.kube, name, jobs_in)
        except ApiError as exc:
            if exc.code not in (401, 403):
                raise
            log.warning("cannot delete the run Jobs of %s/%s: %s", namespace, name, exc)
        else:
            if deleted:
                log.info("deleted %d run Job(s) of %s/%s", deleted, namespace, name)
        for run_ns in run_namespaces - {None, namespace}:
            try:
                steps.delete_run_objects(self.kube, name, str(run_ns))
            except ApiError as exc:
                if exc.code not in (401, 403):
                    raise  # transient: kopf retries the deletion handler
                # No rights there (any more): retrying forever would block the CR's deletion.
                log.warning("cannot clean up run namespace %s of %s/%s: %s", run_ns, namespace, name, exc)
