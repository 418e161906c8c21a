"""Status from observation: pure functions from observed children (plain dicts) to PhloWorkflow.status."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

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
class Observed:
    """Everything status is computed from. deployments maps component -> live Deployment (None: absent)."""

    generation: int
    invalid: str | None = None
    suspended: bool = False
    deployments: dict[str, Obj | None] = dataclasses.field(default_factory=dict)
    postgres: Obj | None = None
    managed_postgres: bool = True
    storage_problem: str | None = None
    storage_reason: str = "StorageSecretInvalid"
    dbt: DbtObservation = DbtObservation("Disabled")
    code_server_gated: bool = False
    apply_error: str | None = None
    webserver_url: str | None = None


COMPONENT_CONDITIONS = {
    "webserver": "WebserverReady",
    "daemon": "DaemonReady",
    "code-server": "CodeServerReady",
}


def deployment_check(dep: Obj | None, suspended: bool = False) -> Check:
    """Ready when the newest template is fully rolled out and available."""
    if suspended:
        return Check(False, "Suspended", "scaled to 0 by spec.suspend")
    if dep is None:
        return Check(False, "NotFound", "Deployment does not exist yet")
    spec = dep.get("spec", {})
    st = dep.get("status", {})
    wanted = spec.get("replicas", 1)
    generation = dep.get("metadata", {}).get("generation", 0)
    for cond in st.get("conditions", []):
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Check(False, "ProgressDeadlineExceeded", cond.get("message", "rollout stalled"))
    if st.get("observedGeneration", 0) < generation:
        return Check(False, "RollingOut", "the Deployment controller has not seen the latest spec yet")
    updated, available, total = (st.get(k, 0) for k in ("updatedReplicas", "availableReplicas", "replicas"))
    if updated < wanted:
        return Check(False, "RollingOut", f"{updated}/{wanted} pods updated")
    if total > updated:
        return Check(False, "RollingOut", f"{total - updated} old pods still terminating")
    if available < wanted:
        return Check(False, "Unavailable", f"{available}/{wanted} pods available")
    if wanted == 0:
        return Check(False, "ScaledToZero", "replicas is 0")
    return Check(True, "Available", f"{available}/{wanted} pods available")


def statefulset_check(sts: Obj | None) -> Check:
    if sts is None:
        return Check(False, "NotFound", "StatefulSet does not exist yet")
    wanted = sts.get("spec", {}).get("replicas", 1)
    st = sts.get("status", {})
    if st.get("observedGeneration", 0) < sts.get("metadata", {}).get("generation", 0):
        return Check(False, "RollingOut", "the StatefulSet controller has not seen the latest spec yet")
    ready = st.get("readyReplicas", 0)
    if ready < wanted or st.get("updatedReplicas", 0) < wanted:
        return Check(False, "Unavailable", f"{ready}/{wanted} PostgreSQL pods ready")
    return Check(True, "Available", "PostgreSQL is ready")


def job_observation(job: Obj | None, spec_hash: str, job_name: str) -> DbtObservation:
    """Outcome of the dbt-compile Job from its conditions (a failed Job is never treated as finished)."""
    if job is None:
        return DbtObservation("Pending", job_name, spec_hash, "JobPending", "dbt-compile Job not created yet")
    for cond in job.get("status", {}).get("conditions", []):
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return DbtObservation(
                "Succeeded",
                job_name,
                spec_hash,
                "Succeeded",
                "dbt project compiled",
                job.get("status", {}).get("completionTime") or cond.get("lastTransitionTime"),
            )
        if cond.get("type") in ("Failed", "FailureTarget"):
            reason = cond.get("reason") or "Failed"
            return DbtObservation(
                "Failed",
                job_name,
                spec_hash,
                reason,
                f"Job {job_name} failed: {cond.get('message') or reason}",
            )
    return DbtObservation(
        "Running", job_name, spec_hash, "Running", f"Job {job_name} is compiling the dbt project"
    )


def _condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def conditions(obs: Observed) -> list[dict[str, Any]]:
    """Ready, Progressing, Degraded and one per component, without timestamps."""
    if obs.invalid is not None:
        msg = obs.invalid
        out = [
            _condition("Ready", False, "InvalidSpec", msg),
            _condition("Progressing", False, "InvalidSpec", "nothing is reconciled until the spec is fixed"),
            _condition("Degraded", True, "InvalidSpec", msg),
        ]
        return out
    checks = {c: deployment_check(obs.deployments.get(c), obs.suspended) for c in COMPONENT_CONDITIONS}
    out = [_condition(COMPONENT_CONDITIONS[c], ch.ok, ch.reason, ch.message) for c, ch in checks.items()]
    dbt = obs.dbt
    if dbt.state == "Disabled":
        out.append(_condition("DbtCompiled", True, "Disabled", "dbt is disabled"))
    else:
        out.append(_condition("DbtCompiled", dbt.state == "Succeeded", dbt.reason or dbt.state, dbt.message))
    storage: Check
    if obs.storage_problem:
        storage = Check(False, obs.storage_reason, obs.storage_problem)
    elif obs.managed_postgres:
        storage = statefulset_check(obs.postgres)
    else:
        storage = Check(True, "ExternalSecret", "using the PostgreSQL named by storage.postgres.secretName")
    out.append(_condition("StorageReady", storage.ok, storage.reason, storage.message))

    degraded: tuple[str, str] | None = None
    if dbt.state == "Failed":
        degraded = ("DbtCompileFailed", dbt.message)
    elif obs.apply_error:
        degraded = ("ApplyFailed", obs.apply_error)
    elif obs.storage_problem:
        degraded = (obs.storage_reason, obs.storage_problem)
    else:
        stalled = [c for c, ch in checks.items() if ch.reason == "ProgressDeadlineExceeded"]
        if stalled:
            degraded = ("ProgressDeadlineExceeded", f"rollout stalled: {', '.join(stalled)}")
    out.append(
        _condition("Degraded", True, *degraded)
        if degraded
        else _condition("Degraded", False, "AsExpected", "no problems observed")
    )

    rolling = [c for c, ch in checks.items() if ch.reason == "RollingOut"]
    if dbt.state in ("Running", "Pending"):
        out.append(_condition("Progressing", True, "DbtCompiling", dbt.message))
    elif rolling:
        out.append(_condition("Progressing", True, "RollingOut", f"rolling out: {', '.join(rolling)}"))
    else:
        out.append(_condition("Progressing", False, "Idle", "no rollout in progress"))

    if obs.suspended:
        ready = Check(False, "Suspended", "spec.suspend is true; Dagster is scaled to 0, data is kept")
    else:
        not_ready = [COMPONENT_CONDITIONS[c] for c, ch in checks.items() if not ch.ok]
        if not storage.ok:
            not_ready.append("StorageReady")
        if not not_ready:
            ready = Check(True, "Available", "webserver, daemon and code server are available")
        elif dbt.state == "Failed" and not checks["code-server"].ok:
            ready = Check(False, "DbtCompileFailed", dbt.message)
        elif dbt.state in ("Running", "Pending") and not checks["code-server"].ok:
            ready = Check(False, "DbtCompiling", dbt.message)
        else:
            ready = Check(False, "ComponentsNotReady", "not ready: " + ", ".join(not_ready))
    out.insert(0, _condition("Ready", ready.ok, ready.reason, ready.message))
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


def compute(
    obs: Observed, previous: dict[str, Any], now: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The full status object to write; equal to `previous` when nothing changed (so no write is needed)."""
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "conditions": with_timestamps(conditions(obs), previous.get("conditions", []), obs.generation, now),
    }
    if obs.webserver_url:
        status["webserverUrl"] = obs.webserver_url
    for key in ("dbt", "codeServer", "runLauncher", "metrics"):
        if previous.get(key):
            status[key] = previous[key]
    for key, value in (extra or {}).items():
        status[key] = {**status.get(key, {}), **value}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == type_), None)


def transitions(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Events to post, (condition, type, reason, message), on each significant condition change."""
    events: list[tuple[str, str, str, str]] = []
    for type_, good_reason, recovered in (
        ("Ready", "Ready", "NotReady"),
        ("Degraded", "Recovered", "Degraded"),
        ("DbtCompiled", "DbtCompiled", "DbtNotCompiled"),
    ):
        old, new = condition(before, type_), condition(after, type_)
        if new is None:
            continue
        good = (new["status"] == "True") != (type_ == "Degraded")
        flipped = old is None or old["status"] != new["status"]
        reason_changed = old is not None and old["reason"] != new["reason"]
        if old is None and (good or type_ == "Ready"):
            continue  # the first status of a new workflow is not news
        if type_ == "DbtCompiled" and new["reason"] in ("Running", "JobPending", "Suspended"):
            continue
        if not flipped and not (type_ == "Degraded" and reason_changed and not good):
            continue
        if good:
            events.append((type_, "Normal", good_reason, f"{type_}={new['status']}: {new['message']}"))
        else:
            reason = new["reason"] if new["reason"] not in ("AsExpected",) else recovered
            kind = "Normal" if reason in ("Suspended", "DbtCompiling") else "Warning"
            events.append((type_, kind, reason, f"{type_}={new['status']}: {new['message']}"))
    return events
