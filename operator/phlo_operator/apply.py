"""The only module that talks to the API server: reads, server-side apply (one field manager), creates,
deletes, status patches and Events. Writes are skipped when the live object already matches."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse

from phlo_operator import model as m
from phlo_operator.names import MANAGER
from phlo_operator.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

Ref = tuple[str, str, str, str]  # apiVersion, kind, namespace, name
ErrorHook = Callable[[str, int], None]

# (apiVersion, kind) -> plural; all are namespaced.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Pod"): "pods",  # read only: the termination messages of the instance upgrade's Jobs
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Event"): "events",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("batch/v1", "Job"): "jobs",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitors",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    (m.API_VERSION, m.KIND): m.PLURAL,
}
DISCOVERY_TTL = 60.0
APPLY_PATCH = "application/apply-patch+yaml"
# Characters a YAML reader may not take raw (outside its printable set), or would read as a line break inside
# a quoted string (NEL, LS, PS) or drop (BOM): sent as JSON \u escapes, which YAML reads too.
_NOT_YAML_PRINTABLE = re.compile(
    r"[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_IGNORED_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


class ApiError(Exception):
    """An API call failed in a way a retry may fix; carries the verb and HTTP code for metrics and status."""

    def __init__(self, verb: str, code: int, reason: str) -> None:
        super().__init__(f"{verb} failed with HTTP {code}: {reason}")
        self.verb, self.code, self.reason = verb, code, reason
        # The conditions the failed pass reported (Degraded/ApplyFailed), when its status write went through:
        # the metrics count the workflow as Degraded, so PhloWorkflowDegraded fires.
        self.conditions: list[dict[str, Any]] | None = None


def apply_body(obj: dict[str, Any]) -> bytes:
    """A server-side apply body: JSON, which is YAML, except that JSON escapes a character beyond the Basic
    Multilingual Plane (an emoji) as two surrogates, and the API server's YAML reader refuses those. So the
    text is UTF-8 and only what YAML cannot carry raw is escaped (each such character is in the BMP)."""
    text = json.dumps(obj, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda ch: f"\\u{ord(ch.group()):04x}", text).encode()


def ref_of(obj: dict[str, Any]) -> Ref:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def path(api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    plural = PLURALS[(api_version, kind)]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = f"{root}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None or value == []


def contains(live: Any, desired: Any) -> bool:
    """True when every value we would send is already live (empty maps/lists count as absent)."""
    if _empty(desired) and (live is None or _empty(live)):
        return True
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(contains(live.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        return len(live) == len(desired) and all(contains(a, b) for a, b in zip(live, desired, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if isinstance(desired, (int, float)) and isinstance(live, str):
        return str(desired) == live
    return bool(live == desired)


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    meta = {k: v for k, v in out.get("metadata", {}).items() if k not in _IGNORED_META}
    out["metadata"] = meta
    out.pop("status", None)
    return out


class Versions:
    """The resourceVersion of every object the last requests returned (GET, LIST, writes). A watch event
    carrying one of them says nothing a pass has not already seen (most often: our own write coming back),
    so the handlers need not trigger another pass for it. Plain dict operations: safe across threads."""

    def __init__(self) -> None:
        self._by_ref: dict[Ref, str] = {}

    def record(self, body: dict[str, Any] | None) -> None:
        """Remember the object(s) in a response body: one object, or a list (its items carry no kind)."""
        if not body or not isinstance(body.get("metadata"), dict):
            return
        kind, api_version = str(body.get("kind") or ""), str(body.get("apiVersion") or "")
        items = body.get("items")
        if kind.endswith("List") and isinstance(items, list):
            for item in items:
                self._remember(api_version, kind[: -len("List")], item)
        elif kind and api_version:
            self._remember(api_version, kind, body)

    def _remember(self, api_version: str, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if version and meta.get("name"):
            self._by_ref[(api_version, kind, meta.get("namespace", ""), meta["name"])] = version

    def seen(self, body: Mapping[str, Any]) -> bool:
        """True when this object, at exactly this resourceVersion, came back from one of our requests."""
        meta = body.get("metadata") or {}
        version = meta.get("resourceVersion")
        api_version, kind = body.get("apiVersion", ""), body.get("kind", "")
        ref = (api_version, kind, meta.get("namespace", ""), meta.get("name", ""))
        return bool(version) and self._by_ref.get(ref) == version


class Api(Protocol):
    """What the reconciler needs from the API server: Kube below, or a fake in the unit tests."""

    def get(self, ref: Ref) -> dict[str, Any] | None: ...
    def list(
        self, api_version: str, kind: str, namespace: str, selector: str = ""
    ) -> list[dict[str, Any]]: ...
    def has_api(self, group_version: str, plural: str) -> bool: ...
    def apply(self, desired: dict[str, Any], live: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]: ...
    def create(self, obj: dict[str, Any]) -> bool: ...
    def delete(self, ref: Ref, propagation: str = "Background") -> bool: ...
    def merge_patch(self, ref: Ref, patch: dict[str, Any]) -> None: ...
    def patch_status(self, cr: dict[str, Any], status: dict[str, Any]) -> None: ...
    def event(self, cr: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


class Kube:
    """A thin synchronous REST client over the kubernetes package's ApiClient (auth and TLS stay there)."""

    def __init__(
        self,
        api_client: ApiClient,
        on_error: ErrorHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_retry: ErrorHook | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api_client
        self.on_error = on_error or (lambda verb, code: None)
        self.on_retry = on_retry or (lambda verb, code: None)
        self.policy = policy or RetryPolicy()
        self.clock, self.sleep = clock, sleep
        self._discovery: dict[str, tuple[bool, float]] = {}
        self.versions = Versions()
        # Called with every decoded response but a dry run's (phlo_operator.store keeps the objects).
        self.on_response: list[Callable[[dict[str, Any]], None]] = []

    # -- raw requests ---------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One API call: the decoded body (None: GET or DELETE found nothing), else raises ApiError. An
        answer the retry policy names (429; 409 on a PATCH) is sent again after its backoff, a few times."""
        retry = 0
        while True:
            try:
                return self._request_once(method, url, body, query, content_type)
            except ApiException as exc:
                code = exc.status or 0
                retry += 1
                wait = (
                    self.policy.delay(retry, _retry_after(exc))
                    if self.policy.retryable(method, code)
                    else None
                )
                if wait is None:
                    if code == 404 and method in ("GET", "DELETE"):
                        return None
                    self.on_error(method.lower(), code)
                    raise ApiError(method.lower(), code, _reason(exc)) from None
                self.on_retry(method.lower(), code)
                log.info(
                    "%s %s answered HTTP %d (%s); retry %d of %d in %.1fs",
                    method,
                    url,
                    code,
                    _reason(exc),
                    retry,
                    self.policy.retries,
                    wait,
                )
                self.sleep(wait)

    def _request_once(
        self, method: str, url: str, body: Any, query: list[tuple[str, str]] | None, content_type: str
    ) -> dict[str, Any] | None:
        """One attempt: the decoded body; an HTTP error answer raises ApiException, anything else ApiError."""
        verb = method.lower()
        try:
            if content_type == APPLY_PATCH:
                raw = self._send_apply(method, url, body, query or [])
            else:
                resp = self.api.call_api(
                    url,
                    method,
                    query_params=query or [],
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=30,
                )
                raw = resp[0].data if isinstance(resp, tuple) else resp.data
        except ApiException:
            raise
        except Exception as exc:  # connection refused, TLS, timeouts
            self.on_error(verb, 0)
            raise ApiError(verb, 0, type(exc).__name__) from None
        decoded: dict[str, Any] = json.loads(raw) if raw else {}
        if ("dryRun", "All") not in (query or []):  # a dry run's answer is not what the server holds
            self.versions.record(decoded)
            for hook in self.on_response:
                hook(decoded)
        return decoded

    def _send_apply(self, method: str, url: str, body: Any, query: list[tuple[str, str]]) -> bytes:
        """A server-side apply with its body encoded by apply_body (the client would encode emoji as JSON
        surrogates), through the client's connection pool (its TLS) with its auth, under the exact content
        type (the API server counts only that one as verb APPLY in apiserver_request_total)."""
        headers = {**self.api.default_headers, "Content-Type": APPLY_PATCH, "Accept": "application/json"}
        self.api.update_params_for_auth(headers, query, ["BearerToken"])
        target = f"{self.api.configuration.host}{url}?{urlencode(query)}"
        pool = self.api.rest_client.pool_manager
        resp = pool.request(method, target, body=apply_body(body), headers=headers, timeout=30.0)
        if not 200 <= resp.status <= 299:
            raise ApiException(http_resp=RESTResponse(resp))
        return bytes(resp.data)

    # -- reads
    def get(self, ref: Ref) -> dict[str, Any] | None:
        api_version, kind, namespace, name = ref
        return self.request("GET", path(api_version, kind, namespace, name))

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        body = self.request("GET", path(api_version, kind, namespace), query=query)
        return list((body or {}).get("items", []))

    def has_api(self, group_version: str, plural: str) -> bool:
        """API discovery (e.g. whether the ServiceMonitor CRD is installed); cached for DISCOVERY_TTL
        seconds, so a CRD installed (or removed) after the operator started is noticed."""
        key = f"{group_version}/{plural}"
        cached = self._discovery.get(key)
        if cached is None or self.clock() - cached[1] > DISCOVERY_TTL:
            body = self.request("GET", f"/apis/{group_version}")
            found = any(r.get("name") == plural for r in (body or {}).get("resources", []))
            self._discovery[key] = (found, self.clock())
        return self._discovery[key][0]

    # -- writes
    def apply(self, desired: dict[str, Any], live: dict[str, Any] | None) -> tuple[bool, dict[str, Any]]:
        """Server-side apply unless nothing would change; returns (written, resulting object)."""
        if live is not None and contains(live, desired):
            return False, live
        api_version, kind, namespace, name = ref_of(desired)
        url = path(api_version, kind, namespace, name)
        base = [("fieldManager", MANAGER), ("force", "true")]
        if live is not None:
            # The API server normalises some values (quantities): ask it whether a write changes anything.
            preview = self.request("PATCH", url, desired, [*base, ("dryRun", "All")], APPLY_PATCH)
            if preview is not None and _strip(preview) == _strip(live):
                return False, live
        result = self.request("PATCH", url, desired, base, APPLY_PATCH)
        log.info("applied %s %s/%s", kind, namespace, name)
        return True, result or {}

    def create(self, obj: dict[str, Any]) -> bool:
        """Create if absent (409 means it exists); used for objects we must never overwrite."""
        api_version, kind, namespace, _ = ref_of(obj)
        try:
            self.request("POST", path(api_version, kind, namespace), obj, [("fieldManager", MANAGER)])
        except ApiError as exc:
            if exc.code == 409:
                return False
            raise
        log.info("created %s %s/%s", kind, namespace, obj["metadata"]["name"])
        return True

    def delete(self, ref: Ref, propagation: str = "Background") -> bool:
        api_version, kind, namespace, name = ref
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        done = self.request("DELETE", path(api_version, kind, namespace, name), body) is not None
        if done:
            log.info("deleted %s %s/%s", kind, namespace, name)
        return done

    def merge_patch(self, ref: Ref, patch: dict[str, Any]) -> None:
        """A JSON merge patch, for the rare field SSA cannot hand over (owner references set at creation)."""
        api_version, kind, namespace, name = ref
        url = path(api_version, kind, namespace, name)
        self.request("PATCH", url, patch, [("fieldManager", MANAGER)], "application/merge-patch+json")

    def patch_status(self, cr: dict[str, Any], status: dict[str, Any]) -> None:
        meta = cr["metadata"]
        url = path(m.API_VERSION, m.KIND, meta["namespace"], meta["name"], "status")
        self.request("PATCH", url, {"status": status}, content_type="application/merge-patch+json")

    def event(self, cr: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the PhloWorkflow; failures are logged, never raised."""
        meta = cr["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name'][:200].rstrip('.-')}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": m.API_VERSION,
                "kind": m.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", path("v1", "Event", meta["namespace"]), body)
        except ApiError as exc:
            log.warning("could not post event %s: %s", reason, exc)


def _retry_after(exc: ApiException) -> float | None:
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        body = {}
    return retry_after(dict(exc.headers or {}), body if isinstance(body, dict) else None)


def _reason(exc: ApiException) -> str:
    try:
        return stable_message(str(json.loads(exc.body or "{}").get("message") or exc.reason))
    except (ValueError, AttributeError):
        return str(exc.reason)


def stable_message(message: str) -> str:
    """The API server lists server-side-apply schema errors in random order; sorted, a status built from
    the message does not change (and re-trigger a reconcile) on every retry."""
    head, sep, rest = message.partition("errors:\n")
    if not sep:
        return message
    return head + sep + "\n".join(sorted(rest.splitlines()))
