"""Status from observation: pure functions from observed children (plain dicts) to PhloWorkflow.status."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from phlo_operator import vocabulary as v

Obj = dict[str, Any]
DbtState = Literal["Disabled", "Succeeded", "Running", "Pending", "Failed"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One component's verdict."""

    ok: bool
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class DbtObservation:
    state: DbtState
    job_name: str | None = None
    spec_hash: str | None = None
    reason: str = ""
    message: str = ""
    completion_time: str | None = None


@dataclasses.dataclass(frozen=True)
class LocationObserved:
    """One code location: its live code-server Deployment, its dbt compile, what the webserver says of it."""

    name: str
    deployment: Obj | None
    dbt: DbtObservation = DbtObservation("Disabled")
    loaded: Check | None = None  # None: not asked


@dataclasses.dataclass(frozen=True)
class Migration:
    """The Migrated condition: status True, False or Unknown; migrating: a gate or migrate Job runs."""

    status: str
    reason: str
    message: str
    migrating: bool = False


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything status is computed from. deployments maps component -> live Deployment (None: absent)."""

    generation: int
    invalid: str | None = None
    suspended: bool = False
    deployments: dict[str, Obj | None] = dataclasses.field(default_factory=dict)
    postgres: Obj | None = None
    managed_postgres: bool = True
    storage_problem: str | None = None
    storage_reason: str = v.STORAGE_SECRET_INVALID
    # What the pods need and does not exist (env and envFrom sources, the ServiceAccount), by spec field.
    missing_reference: str | None = None
    dbt: DbtObservation = DbtObservation("Disabled")
    code_server_gated: bool = False
    # Set when the pass failed at the API: then nothing else here was observed, and status keeps the last
    # observation, only marking Degraded (and, before any observation, Ready) ApplyFailed.
    apply_error: str | None = None
    webserver_url: str | None = None
    # What the webserver says of the code location; None when not asked (--no-code-location-check).
    code_location: Check | None = None
    # Each code location; when given, CodeServerReady, DbtCompiled and CodeLocationLoaded cover them all
    # (deployments[code-server], dbt and code_location are then not read).
    locations: tuple[LocationObserved, ...] = ()
    # status.codeLocations to write (None: keep the previous).
    code_locations: list[dict[str, Any]] | None = None
    # The instance upgrade (None: not looked at, as in unit tests of status alone).
    migration: Migration | None = None
    migration_problem: str | None = None  # Degraded's message when a version gate or migration failed


COMPONENT_CONDITIONS = v.COMPONENT_CONDITIONS


def deployment_check(dep: Obj | None, suspended: bool = False) -> Check:
    """Ready when the newest template is fully rolled out and available."""
    if suspended:
        return Check(False, v.SUSPENDED, "scaled to 0 by spec.suspend")
    if dep is None:
        return Check(False, v.NOT_FOUND, "Deployment does not exist yet")
    spec = dep.get("spec", {})
    st = dep.get("status", {})
    wanted = spec.get("replicas", 1)
    generation = dep.get("metadata", {}).get("generation", 0)
    for cond in st.get("conditions", []):
        if cond.get("type") == "Progressing" and cond.get("reason") == v.PROGRESS_DEADLINE_EXCEEDED:
            return Check(False, v.PROGRESS_DEADLINE_EXCEEDED, cond.get("message", "rollout stalled"))
    if st.get("observedGeneration", 0) < generation:
        return Check(False, v.ROLLING_OUT, "the Deployment controller has not seen the latest spec yet")
    updated, available, total = (st.get(k, 0) for k in ("updatedReplicas", "availableReplicas", "replicas"))
    if updated < wanted:
        return Check(False, v.ROLLING_OUT, f"{updated}/{wanted} pods updated")
    if total > updated:
        return Check(False, v.ROLLING_OUT, f"{total - updated} old pods still terminating")
    if available < wanted:
        return Check(False, v.UNAVAILABLE, f"{available}/{wanted} pods available")
    if wanted == 0:
        return Check(False, v.SCALED_TO_ZERO, "replicas is 0")
    return Check(True, v.AVAILABLE, f"{available}/{wanted} pods available")


def statefulset_check(sts: Obj | None) -> Check:
    if sts is None:
        return Check(False, v.NOT_FOUND, "StatefulSet does not exist yet")
    wanted = sts.get("spec", {}).get("replicas", 1)
    st = sts.get("status", {})
    if st.get("observedGeneration", 0) < sts.get("metadata", {}).get("generation", 0):
        return Check(False, v.ROLLING_OUT, "the StatefulSet controller has not seen the latest spec yet")
    ready = st.get("readyReplicas", 0)
    if ready < wanted or st.get("updatedReplicas", 0) < wanted:
        return Check(False, v.UNAVAILABLE, f"{ready}/{wanted} PostgreSQL pods ready")
    return Check(True, v.AVAILABLE, "PostgreSQL is ready")


def job_observation(job: Obj | None, spec_hash: str, job_name: str) -> DbtObservation:
    """Outcome of the dbt-compile Job from its conditions (a failed Job is never treated as finished)."""
    if job is None:
        return DbtObservation(
            "Pending", job_name, spec_hash, v.JOB_PENDING, "dbt-compile Job not created yet"
        )
    for cond in job.get("status", {}).get("conditions", []):
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return DbtObservation(
                "Succeeded",
                job_name,
                spec_hash,
                v.SUCCEEDED,
                "dbt project compiled",
                job.get("status", {}).get("completionTime") or cond.get("lastTransitionTime"),
            )
        if cond.get("type") in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or v.FAILED
            return DbtObservation(
                "Failed",
                job_name,
                spec_hash,
                reason,
                f"Job {job_name} failed: {cond.get('message') or reason}",
            )
    return DbtObservation(
        "Running", job_name, spec_hash, v.RUNNING, f"Job {job_name} is compiling the dbt project"
    )


def combine(checks: list[tuple[str, Check]]) -> Check:
    """One verdict over the code locations: the single one's as it is; else ok when all are, the reason of
    the first that is not, and a message naming each location."""
    if len(checks) == 1:
        return checks[0][1]
    bad = [(name, check) for name, check in checks if not check.ok]
    shown = bad or checks
    message = "; ".join(f"{name}: {check.message}" for name, check in shown)
    return Check(not bad, shown[0][1].reason, message)


def combine_dbt(locations: tuple[LocationObserved, ...]) -> DbtObservation:
    """The dbt compiles of all locations as one: a failed one first, then one under way."""
    if len(locations) == 1:
        return locations[0].dbt
    for state in ("Failed", "Running", "Pending"):
        hits = [loc for loc in locations if loc.dbt.state == state]
        if hits:
            message = "; ".join(f"{loc.name}: {loc.dbt.message}" for loc in hits)
            return dataclasses.replace(hits[0].dbt, message=message)
    compiled = [loc.name for loc in locations if loc.dbt.state == "Succeeded"]
    if not compiled:
        return DbtObservation("Disabled")
    return DbtObservation(
        "Succeeded", reason=v.SUCCEEDED, message=f"dbt projects compiled: {', '.join(compiled)}"
    )


def _condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def conditions(obs: Observed) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded and one per component, without timestamps."""
    if obs.invalid is not None:
        msg = obs.invalid
        return [
            _condition(v.READY, False, v.INVALID_SPEC, msg),
            _condition(v.PROGRESSING, False, v.INVALID_SPEC, "nothing is reconciled until the spec is fixed"),
            _condition(v.DEGRADED, True, v.INVALID_SPEC, msg),
        ]
    checks = {c: deployment_check(obs.deployments.get(c), obs.suspended) for c in COMPONENT_CONDITIONS}
    dbt, location = obs.dbt, obs.code_location
    if obs.locations:
        checks[v.CODE_SERVER] = combine(
            [(loc.name, deployment_check(loc.deployment, obs.suspended)) for loc in obs.locations]
        )
        dbt = combine_dbt(obs.locations)
        asked = [(loc.name, loc.loaded) for loc in obs.locations if loc.loaded is not None]
        location = combine(asked) if asked else None
    out = [_condition(COMPONENT_CONDITIONS[c], ch.ok, ch.reason, ch.message) for c, ch in checks.items()]
    if dbt.state == "Disabled":
        out.append(_condition(v.DBT_COMPILED, True, v.DISABLED, "dbt is disabled"))
    else:
        out.append(_condition(v.DBT_COMPILED, dbt.state == "Succeeded", dbt.reason or dbt.state, dbt.message))
    storage: Check
    if obs.storage_problem:
        storage = Check(False, obs.storage_reason, obs.storage_problem)
    elif obs.managed_postgres:
        storage = statefulset_check(obs.postgres)
    else:
        storage = Check(True, v.EXTERNAL_SECRET, "using the PostgreSQL named by storage.postgres.secretName")
    out.append(_condition(v.STORAGE_READY, storage.ok, storage.reason, storage.message))
    if location is not None and not obs.suspended:
        out.append(_condition(v.CODE_LOCATION_LOADED, location.ok, location.reason, location.message))
    migration = obs.migration
    if migration is not None:
        out.append(
            {
                "type": v.MIGRATED,
                "status": migration.status,
                "reason": migration.reason,
                "message": migration.message,
            }
        )

    degraded: tuple[str, str] | None = None
    if dbt.state == "Failed":
        degraded = (v.DBT_COMPILE_FAILED, dbt.message)
    elif migration is not None and obs.migration_problem:
        degraded = (migration.reason, obs.migration_problem)
    elif obs.storage_problem:
        degraded = (obs.storage_reason, obs.storage_problem)
    elif obs.missing_reference:
        degraded = (v.REFERENCE_NOT_FOUND, obs.missing_reference)
    else:
        stalled = [c for c, ch in checks.items() if ch.reason == v.PROGRESS_DEADLINE_EXCEEDED]
        if stalled:
            degraded = (v.PROGRESS_DEADLINE_EXCEEDED, f"rollout stalled: {', '.join(stalled)}")
    out.append(
        _condition(v.DEGRADED, True, *degraded)
        if degraded
        else _condition(v.DEGRADED, False, v.AS_EXPECTED, "no problems observed")
    )

    rolling = [c for c, ch in checks.items() if ch.reason == v.ROLLING_OUT]
    if dbt.state in ("Running", "Pending"):
        out.append(_condition(v.PROGRESSING, True, v.DBT_COMPILING, dbt.message))
    elif migration is not None and migration.migrating:
        out.append(_condition(v.PROGRESSING, True, migration.reason, migration.message))
    elif rolling:
        out.append(_condition(v.PROGRESSING, True, v.ROLLING_OUT, f"rolling out: {', '.join(rolling)}"))
    else:
        out.append(_condition(v.PROGRESSING, False, v.IDLE, "no rollout in progress"))

    if obs.suspended:
        ready = Check(False, v.SUSPENDED, "spec.suspend is true; Dagster is scaled to 0, data is kept")
    else:
        not_ready = [COMPONENT_CONDITIONS[c] for c, ch in checks.items() if not ch.ok]
        if not storage.ok:
            not_ready.append(v.STORAGE_READY)
        if obs.missing_reference:  # no new pod can start: running ones are lost at their next restart
            ready = Check(False, v.REFERENCE_NOT_FOUND, obs.missing_reference)
        elif not not_ready and location is not None and not location.ok:
            ready = Check(False, v.CODE_LOCATION_NOT_LOADED, location.message)
        elif not not_ready:
            ready = Check(True, v.AVAILABLE, "webserver, daemon and code server are available")
        elif dbt.state == "Failed" and not checks[v.CODE_SERVER].ok:
            ready = Check(False, v.DBT_COMPILE_FAILED, dbt.message)
        elif dbt.state in ("Running", "Pending") and not checks[v.CODE_SERVER].ok:
            ready = Check(False, v.DBT_COMPILING, dbt.message)
        else:
            ready = Check(False, v.COMPONENTS_NOT_READY, "not ready: " + ", ".join(not_ready))
    out.insert(0, _condition(v.READY, ready.ok, ready.reason, ready.message))
    return out


def with_timestamps(
    new: list[dict[str, Any]], previous: list[dict[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """metav1.Condition shape: keep lastTransitionTime unless status flipped."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for cond in new:
        old = before.get(cond["type"])
        when = old["lastTransitionTime"] if old and old.get("status") == cond["status"] else now
        out.append({**cond, "lastTransitionTime": when, "observedGeneration": generation})
    return out


def api_failure_conditions(previous: list[dict[str, Any]], error: str) -> list[dict[str, Any]]:
    """An API failure says nothing about the children: keep what was observed, mark Degraded ApplyFailed."""
    degraded = _condition(v.DEGRADED, True, v.APPLY_FAILED, error)
    kept = [c for c in previous if c.get("type") != v.DEGRADED]
    out = [{k: c[k] for k in ("type", "status", "reason", "message") if k in c} for c in kept]
    if not any(c.get("type") == v.READY for c in kept):  # nothing observed yet: not Ready, say why
        out.insert(0, {**degraded, "type": v.READY, "status": "False"})
    return [*out, degraded]


def compute(
    obs: Observed, previous: dict[str, Any], now: str, extra: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The full status object to write; equal to `previous` when nothing changed (so no write is needed).
    `extra` is the pass's bookkeeping (dbt, codeServer, runLauncher, metrics, exposure), merged over the
    previous."""
    before = previous.get("conditions", [])
    status: dict[str, Any]
    if obs.apply_error is not None:
        status = dict(previous)
        generation = previous.get("observedGeneration", obs.generation)
        new = api_failure_conditions(before, obs.apply_error)
    else:
        status = {"observedGeneration": obs.generation}
        if obs.webserver_url:
            status["webserverUrl"] = obs.webserver_url
        for key in ("dbt", "codeServer", "runLauncher", "metrics", "exposure", "codeLocations", "instance"):
            if previous.get(key):
                status[key] = previous[key]
        if obs.code_locations is not None:
            status["codeLocations"] = obs.code_locations
        generation, new = obs.generation, conditions(obs)
    status["conditions"] = with_timestamps(new, before, generation, now)
    for key, value in (extra or {}).items():
        status[key] = {**status.get(key, {}), **value}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == type_), None)


def transitions(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Events to post, (condition, type, reason, message), on each significant condition change."""
    events: list[tuple[str, str, str, str]] = []
    # condition type, the Event reason when it turns good, the Event reason when bad without a reason
    for type_, good_reason, fallback in (
        (v.READY, v.EVENT_READY, v.EVENT_NOT_READY),
        (v.DEGRADED, v.EVENT_RECOVERED, v.EVENT_DEGRADED),
        (v.DBT_COMPILED, v.EVENT_DBT_COMPILED, v.EVENT_DBT_NOT_COMPILED),
    ):
        old, new = condition(before, type_), condition(after, type_)
        if new is None:
            continue
        good = (new["status"] == "True") != (type_ == v.DEGRADED)
        flipped = old is None or old["status"] != new["status"]
        reason_changed = old is not None and old["reason"] != new["reason"]
        if old is None and (good or type_ == v.READY):
            continue  # the first status of a new workflow is not news
        if type_ == v.DBT_COMPILED and new["reason"] in (v.RUNNING, v.JOB_PENDING, v.SUSPENDED):
            continue
        if not flipped and not (type_ == v.DEGRADED and reason_changed and not good):
            continue
        if good:
            events.append((type_, "Normal", good_reason, f"{type_}={new['status']}: {new['message']}"))
        else:
            reason = new["reason"] if new["reason"] != v.AS_EXPECTED else fallback
            kind = "Normal" if reason in (v.SUSPENDED, v.DBT_COMPILING) else "Warning"
            events.append((type_, kind, reason, f"{type_}={new['status']}: {new['message']}"))
    return events
