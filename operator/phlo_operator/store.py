"""An informer-style store: every object of the kinds the operator watches, as kopf's watch streams and the
operator's own requests last returned it. A reconcile pass reads its children here instead of GETting each
(issue 15: 22 reads a pass became the PhloWorkflow's one); kinds nobody watches still go to the API server.

How it stays right (a stale copy must never skip a needed write):

- Fed from the raw watch streams, in stream order, before kopf hands an event to any handler (`tap_watches`):
  one object's events arrive in order, so the last one wins. Versions are opaque and never compared.
- Authoritative (an object missing here does not exist) for a kind and namespace only between the end of a
  listing and the end of that watch: before the first listing, during a relisting (a watch restarted after
  "410 Gone" or a lost connection lists again) and once a watch stopped (peering paused it), reads go to
  the API server. A relisting drops what it no longer lists (deleted while no watch ran).
- The watch's copy always wins. The operator's own responses (applies, creates, patches, fallback GETs) only
  fill what the watch has not shown yet (an object we just created, or our own earlier response), so the
  next pass sees its own creations without waiting for the watch. A response may reach the store after the
  watch delivered a newer version (the Deployment controller's status update, milliseconds after our create):
  stored over it, that older copy would stay until the object changed again, and a pass would wait on a
  rollout that had ended (the first benchmark run of this store hung so). Kept out, the worst case is a copy
  older than our write until its watch event comes: one more apply that changes nothing, never a skipped one.
  A response never brings back an object whose deletion the watch already delivered (its uid is remembered).
- Drift (someone else changes a child) arrives as a watch event: it replaces the copy, and the child
  handlers trigger a pass, which reads the drifted copy and applies again.

kopf offers no public hook for listing boundaries (its @kopf.index sees neither deletions in stream order nor
the end of a listing, and keeps entries of objects deleted while no watch ran), so the feed wraps kopf's
watch stream function; kopf is pinned by requirements.lock and test_store checks the seam."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from phlo_operator import model as m
from phlo_operator.apply import PLURALS, Api, Ref

Obj = dict[str, Any]
# (apiVersion, kind, namespace or None for a cluster-wide watch): what one kopf watch stream covers.
Scope = tuple[str, str, str | None]
# Kinds the store may hold: every kind the operator reads but its own PhloWorkflow (its one read a pass stays
# a GET: spec, generation and deletion come fresh) and Events (never read). Only the watched ones are fed.
STORED: dict[tuple[str, str], str] = {
    (api_version, plural): kind
    for (api_version, kind), plural in PLURALS.items()
    if kind not in (m.KIND, "Event")
}
STORED_KINDS = frozenset((api_version, kind) for (api_version, _), kind in STORED.items())
DELETED_UIDS_KEPT = 4096  # uids of deleted objects a late response of ours must not bring back


@dataclasses.dataclass
class _Entry:
    uid: str
    version: str
    raw: bytes  # compact JSON without managedFields: small, and every read decodes a private copy
    stamp: int  # when it was stored (a relisting drops what it did not list and was stored before it began)
    own: bool  # from a response of ours, not (yet) from the watch


@dataclasses.dataclass
class _ScopeState:
    listed: bool = False  # a listing ended and its watch still runs: absence is known
    listing: set[Ref] | None = None  # what the listing in progress delivered so far
    since: int = 0  # the stamp when that listing began


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


class Store:
    """Objects by Ref, fed by watch events and the operator's own responses; thread-safe (kopf's event loop
    writes, the reconcile threads read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Ref, _Entry] = {}
        self._scopes: dict[Scope, _ScopeState] = {}
        self._deleted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stamps = itertools.count(1)

    # -- the watch feed (kopf's event loop)
    def event(self, api_version: str, kind: str, namespace: str | None, type_: str | None, obj: Obj) -> None:
        """One raw watch event of a scope: type None is an item of a listing (kopf's convention)."""
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            return  # BOOKMARK events carry no object
        ref: Ref = (api_version, kind, meta.get("namespace", ""), meta["name"])
        with self._lock:
            scope = self._scopes.setdefault((api_version, kind, namespace), _ScopeState())
            if type_ is None:
                if scope.listing is None:  # a listing begins: absence is unknown until it ends
                    scope.listed, scope.listing, scope.since = False, set(), next(self._stamps)
                scope.listing.add(ref)
            if type_ == "DELETED":
                self._drop(ref, str(meta.get("uid") or ""))
            else:
                self._put(ref, obj, own=False)

    def listed(self, api_version: str, kind: str, namespace: str | None) -> None:
        """A scope's listing ended (kopf's LISTED bookmark): drop what it did not list, absence is known."""
        with self._lock:
            scope = self._scopes.setdefault((api_version, kind, namespace), _ScopeState())
            seen = scope.listing if scope.listing is not None else set()
            since = scope.since if scope.listing is not None else next(self._stamps)
            for ref in [r for r in self._objects if self._in_scope(r, (api_version, kind, namespace))]:
                if ref not in seen and self._objects[ref].stamp < since:
                    del self._objects[ref]
            scope.listed, scope.listing = True, None

    def unlisted(self, api_version: str, kind: str, namespace: str | None) -> None:
        """A scope's watch stopped (kopf paused or ended it): nothing arrives any more, so GET again."""
        with self._lock:
            scope = self._scopes.setdefault((api_version, kind, namespace), _ScopeState())
            scope.listed, scope.listing = False, None

    # -- the operator's own responses (reconcile threads)
    def record(self, body: Obj | None) -> None:
        """A response body of ours: one object, or a list (its items carry no kind). Kinds without a watch
        scope are not kept (nothing would ever update them)."""
        if not body or not isinstance(body.get("metadata"), dict):
            return
        kind, api_version = str(body.get("kind") or ""), str(body.get("apiVersion") or "")
        items = body.get("items")
        if kind.endswith("List") and isinstance(items, list):
            kind = kind[: -len("List")]
            objects = [{**item, "apiVersion": api_version, "kind": kind} for item in items]
        else:
            objects = [body]
        if (api_version, kind) not in STORED_KINDS:
            return
        with self._lock:
            for obj in objects:
                meta = obj.get("metadata") or {}
                if not meta.get("name"):
                    continue
                ref: Ref = (api_version, kind, meta.get("namespace", ""), meta["name"])
                uid = str(meta.get("uid") or "")
                if uid in self._deleted or not self._scoped(ref):
                    continue
                current = self._objects.get(ref)
                if current is not None and not current.own and current.uid == uid:
                    continue  # the watch's copy: possibly newer than this response
                self._put(ref, obj, own=True)

    def forget(self, ref: Ref) -> None:
        """We deleted it: the next pass must not find it (its DELETED event may come later)."""
        with self._lock:
            self._objects.pop(ref, None)

    # -- reads
    def authoritative(self, api_version: str, kind: str, namespace: str) -> bool:
        with self._lock:
            return self._authoritative(api_version, kind, namespace)

    def get(self, ref: Ref) -> tuple[bool, Obj | None]:
        """(known, object): known False means ask the API server (no listed watch covers the ref)."""
        with self._lock:
            if not self._authoritative(*ref[:3]):
                return False, None
            entry = self._objects.get(ref)
            raw = entry.raw if entry is not None else None
        return True, (json.loads(raw) if raw is not None else None)

    def select(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[Obj] | None:
        """Like a LIST (items without apiVersion and kind); None when unknown or the selector is more than
        `key=value` terms."""
        wanted = _equality_selector(selector)
        if wanted is None:
            return None
        with self._lock:
            if not self._authoritative(api_version, kind, namespace):
                return None
            raws = [
                e.raw
                for (av, k, ns, _), e in self._objects.items()
                if (av, k, ns) == (api_version, kind, namespace)
            ]
        items = []
        for raw in raws:
            obj = json.loads(raw)
            if wanted.items() <= ((obj.get("metadata") or {}).get("labels") or {}).items():
                obj.pop("apiVersion", None)
                obj.pop("kind", None)
                items.append(obj)
        return items

    def owner_of(self, ref: Ref) -> str | None:
        """The PhloWorkflow that owns a stored object, if any (an HPA's target names only its Deployment)."""
        _, obj = self.get(ref)
        for owner in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
            if owner.get("kind") == m.KIND and str(owner.get("apiVersion", "")).startswith(m.GROUP + "/"):
                return str(owner.get("name"))
        return None

    def __len__(self) -> int:
        return len(self._objects)

    # -- internals (lock held)
    def _put(self, ref: Ref, obj: Obj, own: bool) -> None:
        meta = obj.get("metadata") or {}
        version, uid = str(meta.get("resourceVersion") or ""), str(meta.get("uid") or "")
        current = self._objects.get(ref)
        stamp = next(self._stamps)
        if current is not None and version and (current.uid, current.version) == (uid, version):
            current.stamp, current.own = stamp, current.own and own  # the same version: nothing to encode
            return
        slim = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        raw = json.dumps(slim, separators=(",", ":")).encode()
        self._objects[ref] = _Entry(uid, version, raw, stamp, own)

    def _drop(self, ref: Ref, uid: str) -> None:
        current = self._objects.get(ref)
        if current is not None and (not uid or not current.uid or current.uid == uid):
            del self._objects[ref]
        if uid:
            self._deleted[uid] = None
            while len(self._deleted) > DELETED_UIDS_KEPT:
                self._deleted.popitem(last=False)

    def _covering(self, api_version: str, kind: str, namespace: str) -> list[_ScopeState]:
        return [
            s
            for key in ((api_version, kind, namespace), (api_version, kind, None))
            if (s := self._scopes.get(key)) is not None
        ]

    def _authoritative(self, api_version: str, kind: str, namespace: str) -> bool:
        return any(s.listed and s.listing is None for s in self._covering(api_version, kind, namespace))

    def _scoped(self, ref: Ref) -> bool:
        return bool(self._covering(*ref[:3]))

    @staticmethod
    def _in_scope(ref: Ref, scope: Scope) -> bool:
        return ref[:2] == scope[:2] and (scope[2] is None or ref[2] == scope[2])


def _equality_selector(selector: str) -> dict[str, str] | None:
    """`a=b,c==d` -> {a: b, c: d}; None for anything else (set-based terms, `!=`, existence)."""
    wanted: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if not sep or "!" in key or any(ch in term for ch in " ()"):
            return None
        wanted[key] = value
    return wanted


class CachedKube:
    """The Api the reconciler uses: reads from the store where it is authoritative, everything else (and
    every write) through the wrapped client, whose responses feed the store."""

    def __init__(self, kube: Api, store: Store, seen: Callable[[Obj], None] | None = None) -> None:
        """seen: told of every object a read served from the store (Versions.record: its watch event, when
        kopf hands it to a handler, then starts no pass, as for an object a GET returned)."""
        self.kube, self.store = kube, store
        self.seen = seen or (lambda body: None)

    def get(self, ref: Ref) -> Obj | None:
        known, obj = self.store.get(ref)
        if known:
            if obj is not None:
                self.seen(obj)
            return obj
        found = self.kube.get(ref)
        self.store.record(found)
        return found

    def list(self, api_version: str, kind: str, namespace: str, selector: str = "") -> list[Obj]:
        items = self.store.select(api_version, kind, namespace, selector)
        if items is None:
            return self.kube.list(api_version, kind, namespace, selector)
        self.seen({"apiVersion": api_version, "kind": f"{kind}List", "metadata": {}, "items": items})
        return items

    def has_api(self, group_version: str, plural: str) -> bool:
        return self.kube.has_api(group_version, plural)

    def apply(self, desired: Obj, live: Obj | None) -> tuple[bool, Obj]:
        written, result = self.kube.apply(desired, live)
        if written:
            self.store.record(result)
        return written, result

    def create(self, obj: Obj) -> bool:
        return self.kube.create(obj)

    def delete(self, ref: Ref, propagation: str = "Background") -> bool:
        done = self.kube.delete(ref, propagation)
        self.store.forget(ref)
        return done

    def merge_patch(self, ref: Ref, patch: Obj) -> None:
        self.kube.merge_patch(ref, patch)

    def patch_status(self, cr: Obj, status: Obj) -> None:
        self.kube.patch_status(cr, status)

    def event(self, cr: Obj, type_: str, reason: str, message: str) -> None:
        self.kube.event(cr, type_, reason, message)


_TAPPED = "_phlo_store_tap"


def tap_watches(store: Store, watching: Any = None) -> None:
    """Feed the store from every kopf watch stream of a stored kind, in stream order, before kopf queues the
    events for its handlers. `watching` is kopf's watch module (a stand-in in the unit tests)."""
    if watching is None:
        from kopf._cogs.clients import watching
    original: Callable[..., AsyncIterator[Any]] = watching.infinite_watch
    if getattr(original, _TAPPED, False):
        return
    listed_mark = watching.Bookmark.LISTED

    async def infinite_watch(*, resource: Any, namespace: str | None, **kwargs: Any) -> AsyncIterator[Any]:
        api_version = _api_version(resource.group, resource.version)
        kind = STORED.get((api_version, resource.plural))
        stream = original(resource=resource, namespace=namespace, **kwargs)
        if kind is None:
            async for event in stream:
                yield event
            return
        try:
            async for event in stream:
                if event is listed_mark:
                    store.listed(api_version, kind, namespace)
                elif isinstance(event, dict) and isinstance(event.get("object"), dict):
                    store.event(api_version, kind, namespace, event.get("type"), event["object"])
                yield event
        finally:
            store.unlisted(api_version, kind, namespace)

    setattr(infinite_watch, _TAPPED, True)
    watching.infinite_watch = infinite_watch
