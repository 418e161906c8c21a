"""An in-memory API server behind the same methods as phlo_operator.apply.Kube, for reconcile unit tests.

It keeps objects by (apiVersion, kind, namespace, name), merges applies the way server-side apply keeps other
managers' fields (maps merge, lists are replaced), bumps metadata.generation when a spec changes, records
every write and Event, and fails chosen calls with ApiError. Controllers do not run: a test moves children
on with settle() (rollouts finish) or finish_job() (a Job completes or fails)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

from phlo_operator.apply import ApiError, Ref, contains, ref_of

Obj = dict[str, Any]
CR_KIND = ("phlo.dev/v1alpha1", "PhloWorkflow")


def _merge(live: Any, desired: Any, null_deletes: bool = False) -> Any:
    """Maps merge key by key, anything else is replaced; with null_deletes, a JSON merge patch's null."""
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for key, value in desired.items():
            if value is None and null_deletes:
                out.pop(key, None)
            else:
                out[key] = _merge(live.get(key), value, null_deletes)
        return out
    return copy.deepcopy(desired)


@dataclasses.dataclass
class Event:
    type: str
    reason: str
    message: str


COMPONENT = "app.kubernetes.io/component"


class FakeKube:
    """Satisfies phlo_operator.apply.Api; what a test asserts on is in objects, writes and events."""

    def __init__(self, apis: frozenset[str] = frozenset()) -> None:
        self.objects: dict[Ref, Obj] = {}
        self.writes: list[tuple[str, Ref]] = []  # (verb, ref) of every write that reached the "server"
        self.events: list[Event] = []
        self.apis = set(apis)  # "group/version/plural" that discovery finds
        self.failures: dict[tuple[str, str], ApiError] = {}  # (verb, kind) -> error raised on every call
        self._uids = itertools.count(1)

    # -- test controls
    def fail(self, verb: str, kind: str, code: int = 500, reason: str = "injected") -> None:
        self.failures[(verb, kind)] = ApiError(verb, code, reason)

    def heal(self) -> None:
        self.failures.clear()

    def add(self, obj: Obj) -> Obj:
        """Create an object as another client would (a user, a controller)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("generation", 1)
        self.objects[ref_of(obj)] = obj
        return obj

    def remove(self, ref: Ref) -> None:
        del self.objects[ref]

    def kind(self, kind: str) -> list[Obj]:
        return [o for (_, k, _, _), o in self.objects.items() if k == kind]

    def dbt_jobs(self) -> list[Obj]:
        """The dbt-compile Jobs (not the instance's version gate and migrate Jobs)."""
        return [j for j in self.kind("Job") if j["metadata"]["labels"].get(COMPONENT) == "dbt-compile"]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def settle(self) -> None:
        """Every Deployment and StatefulSet finished rolling out (as their controllers would report)."""
        for obj in self.objects.values():
            if obj["kind"] in ("Deployment", "StatefulSet"):
                wanted = obj["spec"].get("replicas", 1)
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": wanted,
                    "updatedReplicas": wanted,
                    "availableReplicas": wanted,
                    "readyReplicas": wanted,
                }

    def finish_job(self, ok: bool = True, component: str = "dbt-compile", message: str = "") -> Obj:
        """The one unfinished Job of `component` completes (or fails, as a broken dbt compile does); with
        `message`, its pod wrote that termination message (as the kubelet reports it)."""
        (job,) = [
            j
            for j in self.kind("Job")
            if "status" not in j and j["metadata"]["labels"].get(COMPONENT) == component
        ]
        cond = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        if not ok:
            cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "exit 2"}
        job["status"] = {"conditions": [cond]}
        if ok:
            job["status"]["completionTime"] = "2026-01-01T00:00:01Z"
        if message:
            name = job["metadata"]["name"]
            terminated = {"exitCode": 0 if ok else 1, "message": message}
            self.add(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{name}-pod",
                        "namespace": job["metadata"]["namespace"],
                        "labels": {"batch.kubernetes.io/job-name": name},
                    },
                    "status": {"containerStatuses": [{"name": "main", "state": {"terminated": terminated}}]},
                }
            )
        return job

    # -- the Api methods
    def _check(self, verb: str, kind: str) -> None:
        error = self.failures.get((verb, kind))
        if error is not None:
            raise ApiError(error.verb, error.code, error.reason)

    def get(self, ref: Ref) -> Obj | None:
        self._check("get", ref[1])
        found = self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[Obj]:
        self._check("list", kind)
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        out = []
        for (av, k, ns, _), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if (av, k, ns) == (api_version, kind, namespace) and wanted.items() <= labels.items():
                item = copy.deepcopy(obj)
                # Like a real API server: the items of a list carry no apiVersion or kind.
                item.pop("apiVersion", None)
                item.pop("kind", None)
                out.append(item)
        return out

    def has_api(self, group_version: str, plural: str) -> bool:
        self._check("discovery", plural)
        return f"{group_version}/{plural}" in self.apis

    def apply(self, desired: Obj, live: Obj | None) -> tuple[bool, Obj]:
        if live is not None and contains(live, desired):
            return False, live
        self._check("patch", desired["kind"])
        ref = ref_of(desired)
        current = self.objects.get(ref)
        if current is None:
            merged = self.add(desired)
        else:
            merged = _merge(current, desired)
            if merged.get("spec") != current.get("spec"):
                merged["metadata"]["generation"] = current["metadata"]["generation"] + 1
            self.objects[ref] = merged
        self.writes.append(("apply", ref))
        return True, copy.deepcopy(merged)

    def create(self, obj: Obj) -> bool:
        self._check("post", obj["kind"])
        ref = ref_of(obj)
        if ref in self.objects:
            return False
        stored = copy.deepcopy(obj)
        if "stringData" in stored:  # what the API server does for Secrets (values stay plain here)
            stored["data"] = stored.pop("stringData")
        self.add(stored)
        self.writes.append(("create", ref))
        return True

    def delete(self, ref: Ref, propagation: str = "Background") -> bool:
        self._check("delete", ref[1])
        if self.objects.pop(ref, None) is None:
            return False
        self.writes.append(("delete", ref))
        return True

    def merge_patch(self, ref: Ref, patch: Obj) -> None:
        self._check("patch", ref[1])
        self.objects[ref] = _merge(self.objects[ref], patch, null_deletes=True)
        self.writes.append(("merge", ref))

    def patch_status(self, cr: Obj, status: Obj) -> None:
        self._check("patch", "status")
        meta = cr["metadata"]
        ref = (*CR_KIND, meta["namespace"], meta["name"])
        self.objects[ref]["status"] = copy.deepcopy(status)
        self.writes.append(("status", ref))

    def event(self, cr: Obj, type_: str, reason: str, message: str) -> None:
        if ("post", "Event") not in self.failures:  # like Kube.event: a failed Event is only logged
            self.events.append(Event(type_, reason, message))
