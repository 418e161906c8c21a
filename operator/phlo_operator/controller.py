"""Process-wide controller: coalesces triggers per PhloWorkflow, runs reconcile passes, records metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kopf

from phlo_operator import metrics
from phlo_operator.apply import ApiError, Kube
from phlo_operator.reconcile import Reconciler
from phlo_operator.store import CachedKube, Store

log = logging.getLogger(__name__)
RETRY_SECONDS = 10.0  # first retry after an API failure; doubles per consecutive failure
MAX_RETRY_SECONDS = 300.0
# How long a deletion waits for the pass in flight before kopf retries the deletion handler.
CLEANUP_WAIT_SECONDS = 60.0
PEERING_NAME = "phlo-dagster-operator"
# A child's change waits this long before its pass: a Deployment's status moves through several updates as it
# rolls out, several children change at once, and each used to cost a pass of its own.
CHILD_DELAY_SECONDS = 0.5


class ApiBackoffs:
    """kopf's delays between attempts of one API request, for settings.networking.error_backoffs: kopf's own
    first eight (1 to 21 s), then every 30 s without end. kopf's default gives up after those eight (about
    a minute), and a watch stream that gives up on a 5xx or 403 (an API server starting, etcd away, RBAC not
    yet synced) ends its watcher task for good: that resource is never watched again until a restart, and
    every workflow waiting on it stalls. A new iterator per request (kopf iterates it once per request)."""

    FIRST = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
    THEN = 30.0

    def __iter__(self) -> Iterator[float]:
        yield from self.FIRST
        yield from itertools.repeat(self.THEN)


@dataclasses.dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    last: float = 0.0
    failures: int = 0
    retry: threading.Timer | None = None
    deleting: bool = False  # the deletion handler runs (or ran): no pass starts any more


@dataclasses.dataclass
class Options:
    clusterwide: bool = False
    priority: int = 0
    peering: bool = True
    # Ready waits for the webserver to report the code location loaded (it must reach the webservers).
    code_location_check: bool = True


class Controller:
    """Triggers from many handlers (CR, children, timer) collapse into one pass at a time per workflow."""

    def __init__(
        self,
        reconciler: Reconciler,
        options: Options,
        seen: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        """seen: whether a watched object's body (at its resourceVersion) came back from our own requests."""
        self.reconciler, self.options = reconciler, options
        self._seen = seen or (lambda body: False)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a pass ends
        self._state: dict[tuple[str, str], _KeyState] = {}
        self._soon: set[tuple[str, str]] = set()  # a pass is due after CHILD_DELAY_SECONDS (guarded by _lock)
        self.child_delay = CHILD_DELAY_SECONDS
        self._executor: concurrent.futures.Executor | None = None  # kopf's, once configured
        self.store: Store | None = None  # what the watches delivered, once build() made one

    def configure_kopf(self, settings: kopf.OperatorSettings) -> None:
        settings.posting.enabled = False  # Events are posted by phlo_operator.apply, only on transitions
        settings.persistence.finalizer = "phlo.dev/operator"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="phlo.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="phlo.dev", key="last-handled-configuration"
        )
        settings.peering.name = PEERING_NAME
        settings.peering.clusterwide = self.options.clusterwide
        settings.peering.priority = self.options.priority
        settings.peering.standalone = not self.options.peering
        settings.peering.mandatory = False
        settings.watching.server_timeout = 270
        settings.watching.client_timeout = 300
        settings.networking.error_backoffs = ApiBackoffs()
        self._executor = settings.execution.executor

    def already_seen(self, body: Mapping[str, Any]) -> bool:
        """A watch event with nothing a pass has not seen: our own write (or a read) coming back. Such an
        event needs no pass: each one cost a full pass of reads, several per workflow as it starts."""
        return self._seen(body)

    def trigger_soon(self, namespace: str, name: str) -> None:
        """From the event loop: one pass after child_delay for however many changes arrive meanwhile (it runs
        in the loop's executor, as kopf runs the synchronous handlers)."""
        key = (namespace, name)
        with self._lock:
            if key in self._soon:
                return
            self._soon.add(key)
        loop = asyncio.get_running_loop()

        def due() -> None:
            with self._lock:
                self._soon.discard(key)
            loop.run_in_executor(self._executor, self.trigger, namespace, name)

        loop.call_later(self.child_delay, due)

    def trigger(self, namespace: str, name: str, min_age: float = 0.0) -> None:
        key = (namespace, name)
        with self._lock:
            state = self._state.setdefault(key, _KeyState())
            if state.deleting or (min_age and time.monotonic() - state.last < min_age):
                return
            if state.running:
                state.dirty = True
                return
            state.running = True
        try:
            while True:
                with self._lock:
                    state.dirty = False
                failed, again = self._run(key)
                with self._lock:
                    self._schedule_retry(key, state, failed)
                    if again is not None and not failed:
                        self._schedule(key, state, again)
                    state.last = time.monotonic()
                    if not state.dirty or state.deleting:
                        return
        finally:
            with self._lock:
                state.running = False
                self._idle.notify_all()

    def _schedule_retry(self, key: tuple[str, str], state: _KeyState, failed: bool) -> None:
        """At most one pending retry per workflow, backing off while the API keeps failing (lock held)."""
        if not failed:
            state.failures = 0
            if state.retry is not None:
                state.retry.cancel()
                state.retry = None
            return
        state.failures += 1
        if state.retry is not None:
            return
        delay = min(RETRY_SECONDS * 2 ** (state.failures - 1), MAX_RETRY_SECONDS)
        log.warning("reconcile %s/%s failed %d time(s), retrying in %.0fs", *key, state.failures, delay)
        self._schedule(key, state, delay)

    def _schedule(self, key: tuple[str, str], state: _KeyState, delay: float) -> None:
        """One pending timer per workflow that triggers a pass after delay (lock held)."""
        if state.retry is not None:
            return

        def fire() -> None:
            with self._lock:
                state.retry = None
            self.trigger(*key)

        state.retry = threading.Timer(delay, fire)
        state.retry.daemon = True
        state.retry.start()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            state = self._state.pop((namespace, name), None)
            if state is not None and state.retry is not None:
                state.retry.cancel()
        metrics.observe_workflow((namespace, name), None)

    def cleanup(
        self, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None
    ) -> None:
        """The deletion handler: no pass starts any more, the one in flight ends, then the objects in other
        run namespaces are deleted. A pass in flight read the workflow before the deletion and may still
        write those objects; a cleanup that did not wait for it would leave them behind, owned by nothing."""
        with self._lock:
            state = self._state.setdefault((namespace, name), _KeyState())
            state.deleting = True
            if not self._idle.wait_for(lambda: not state.running, timeout=CLEANUP_WAIT_SECONDS):
                busy = f"a reconcile pass of {namespace}/{name} is still running"
                raise kopf.TemporaryError(busy, delay=RETRY_SECONDS)
        try:
            self.reconciler.cleanup(namespace, name, spec, status)
        except ApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from None

    def _run(self, key: tuple[str, str]) -> tuple[bool, float | None]:
        """One pass: whether it failed (retried with backoff), and when to look again though it did not."""
        started = time.monotonic()
        try:
            result = self.reconciler.reconcile(*key)
        except ApiError as exc:
            metrics.RECONCILES.labels(result="error").inc()
            if exc.conditions is not None:
                metrics.observe_workflow(key, exc.conditions)
            log.warning("reconcile %s/%s: %s", *key, exc)
            return True, None
        except Exception:  # a bug must not kill the operator; retried with backoff like an API failure
            metrics.RECONCILES.labels(result="error").inc()
            log.exception("reconcile %s/%s crashed", *key)
            return True, None
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(result=result.outcome).inc()
        metrics.observe_workflow(key, None if result.outcome == "gone" else result.conditions)
        if result.writes:
            log.info("reconciled %s/%s: %s, %d writes", *key, result.outcome, result.writes)
        return False, result.requeue_after


_controller: Controller | None = None


def install(ctrl: Controller) -> None:
    global _controller
    _controller = ctrl


def controller() -> Controller:
    if _controller is None:
        raise RuntimeError("phlo_operator.controller.install() was not called (use phlo-dagster-operator)")
    return _controller


def connect() -> Kube:
    """Load credentials (in-cluster or KUBECONFIG) into the one API client, which records API errors."""
    import kubernetes
    from urllib3.util.retry import Retry

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    configuration = kubernetes.client.Configuration.get_default_copy()
    # urllib3 would otherwise resend a throttled GET or DELETE by itself (its default honours Retry-After for
    # those verbs only), unseen and uncounted: Kube's retry policy is the one that decides, for every verb.
    configuration.retries = Retry(3, respect_retry_after_header=False)
    return Kube(
        kubernetes.client.ApiClient(configuration), on_error=metrics.api_error, on_retry=metrics.api_retry
    )


def build(kube: Kube, options: Options) -> Controller:
    """The controller whose passes read children from the store the watches feed (see phlo_operator.store;
    main() taps kopf's watches into it), so a pass sends the API server its writes and one GET."""
    store = Store()
    kube.on_response.append(store.record)
    cached = CachedKube(kube, store, kube.versions.record)
    reconciler = Reconciler(cached) if options.code_location_check else Reconciler(cached, prober=None)
    ctl = Controller(reconciler, options, kube.versions.seen)
    ctl.store = store
    return ctl
