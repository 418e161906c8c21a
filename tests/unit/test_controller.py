"""Triggers from many handlers collapse into one reconcile pass at a time per workflow."""

from __future__ import annotations

import threading
import time
from typing import Any

import kopf
import pytest
from phlo_operator import controller as controller_module
from phlo_operator import metrics
from phlo_operator.controller import Controller, Options
from phlo_operator.reconcile import Result

pytestmark = pytest.mark.unit


class Recorder:
    """Stands in for the Reconciler (our own class, not the Kubernetes API)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.during: Any = None

    def reconcile(self, namespace: str, name: str) -> Result:
        self.calls.append((namespace, name))
        if self.during is not None:
            hook, self.during = self.during, None
            hook()
        return Result("ok", [{"type": "Ready", "status": "True"}])


def test_a_trigger_during_a_pass_runs_exactly_one_more_pass() -> None:
    rec = Recorder()
    ctl = Controller(rec, Options())  # type: ignore[arg-type]

    def twice() -> None:
        ctl.trigger("ns", "a")
        ctl.trigger("ns", "a")

    rec.during = twice
    ctl.trigger("ns", "a")
    assert rec.calls == [("ns", "a"), ("ns", "a")]


def test_resync_skips_a_workflow_reconciled_recently() -> None:
    rec = Recorder()
    ctl = Controller(rec, Options())  # type: ignore[arg-type]
    ctl.trigger("ns", "a")
    ctl.trigger("ns", "a", min_age=60)
    assert len(rec.calls) == 1
    ctl.trigger("ns", "b", min_age=60)  # never reconciled: not skipped
    assert rec.calls[-1] == ("ns", "b")


def test_a_crashing_pass_is_counted_not_raised() -> None:
    class Broken:
        def reconcile(self, namespace: str, name: str) -> Result:
            raise RuntimeError("bug")

    before = metrics.RECONCILES.labels(result="error")._value.get()
    Controller(Broken(), Options()).trigger("ns", "x")  # type: ignore[arg-type]
    assert metrics.RECONCILES.labels(result="error")._value.get() == before + 1


def test_workflow_gauge_counts_conditions_and_forgets_deleted() -> None:
    """Mutation runs (2026-12-02), each red: observe_workflow(key, None) not popping the key (the gauge keeps
    counting a deleted workflow); Controller.forget not calling observe_workflow; WORKFLOWS.clear() removed (a
    condition no workflow has any more keeps its last count)."""

    def gauge() -> dict[tuple[str, str], float]:
        return {
            (s.labels["condition"], s.labels["status"]): s.value
            for family in metrics.WORKFLOWS.collect()
            for s in family.samples
        }

    base = gauge()  # other tests of this process may have left workflows behind

    def count(condition: str, status: str) -> float:
        return gauge().get((condition, status), 0.0) - base.get((condition, status), 0.0)

    metrics.observe_workflow(("ns", "g1"), [{"type": "Ready", "status": "True"}])
    metrics.observe_workflow(("ns", "g2"), [{"type": "Ready", "status": "True"}])
    assert count("Ready", "True") == 2
    metrics.observe_workflow(("ns", "g2"), [{"type": "Ready", "status": "False"}])  # replaced, not added
    assert (count("Ready", "True"), count("Ready", "False")) == (1, 1)
    metrics.observe_workflow(("ns", "g1"), None)
    assert (count("Ready", "True"), count("Ready", "False")) == (0, 1)
    # A deleted workflow (the DELETED watch event calls forget) leaves the gauge.
    ctl = Controller(Recorder(), Options())  # type: ignore[arg-type]
    ctl.trigger("ns", "g3")  # the Recorder's pass reports Ready=True
    assert count("Ready", "True") == 1
    ctl.forget("ns", "g3")
    metrics.observe_workflow(("ns", "g2"), None)
    assert (count("Ready", "True"), count("Ready", "False")) == (0, 0)
    if ("Ready", "False") not in base:  # no series is left behind for a condition no workflow has
        assert ("Ready", "False") not in gauge()


def test_failures_keep_one_pending_retry_with_backoff_and_success_cancels_it() -> None:
    from phlo_operator.apply import ApiError

    class Flaky:
        def __init__(self) -> None:
            self.fail = True

        def reconcile(self, namespace: str, name: str) -> Result:
            if self.fail:
                raise ApiError("patch", 500, "boom")
            return Result("ok", [])

    rec = Flaky()
    ctl = Controller(rec, Options())  # type: ignore[arg-type]
    for _ in range(3):  # three triggers (e.g. watch events) while the API keeps failing
        ctl.trigger("ns", "f")
    state = ctl._state[("ns", "f")]
    assert state.failures == 3
    first = state.retry
    assert first is not None and first.interval == 10.0  # one timer, not one per failure
    ctl._schedule_retry(("ns", "f"), state, failed=True)
    assert state.retry is first
    state.retry.cancel()
    state.retry = None
    ctl._schedule_retry(("ns", "f"), state, failed=True)
    assert state.failures == 5 and state.retry is not None and state.retry.interval == 160.0  # backing off
    rec.fail = False
    ctl.trigger("ns", "f")
    assert state.failures == 0 and state.retry is None


def test_shuffled_apply_errors_give_one_stable_message() -> None:
    from phlo_operator.apply import stable_message

    a = "failed to create typed patch object (x): errors:\n  .b: bad\n  .a: bad"
    b = "failed to create typed patch object (x): errors:\n  .a: bad\n  .b: bad"
    assert stable_message(a) == stable_message(b) == b
    assert stable_message("plain message") == "plain message"


def test_cleanup_waits_for_the_pass_in_flight_and_no_pass_starts_after_it() -> None:
    """A pass that read the workflow before its deletion may still write the run-namespace objects: cleanup
    deletes them only after that pass ended, and nothing (watch event, timer, retry) starts another one."""
    order: list[str] = []
    in_pass, release = threading.Event(), threading.Event()

    class Slow:
        def reconcile(self, namespace: str, name: str) -> Result:
            order.append("pass")
            in_pass.set()
            assert release.wait(10)
            order.append("pass ended")
            return Result("ok", [])

        def cleanup(self, namespace: str, name: str, spec: Any, status: Any) -> None:
            order.append("cleanup")

    ctl = Controller(Slow(), Options())  # type: ignore[arg-type]
    passing = threading.Thread(target=ctl.trigger, args=("ns", "a"))
    passing.start()
    assert in_pass.wait(10)
    deleting = threading.Thread(target=ctl.cleanup, args=("ns", "a", {}, {}))
    deleting.start()
    deadline = time.monotonic() + 10
    while not ctl._state[("ns", "a")].deleting:  # the deletion handler has begun
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ctl.trigger("ns", "a")  # an event during the deletion: no further pass is queued
    assert order == ["pass"]
    release.set()
    deleting.join(10)
    passing.join(10)
    assert order == ["pass", "pass ended", "cleanup"]
    ctl.trigger("ns", "a")
    assert order[-1] == "cleanup"
    ctl.forget("ns", "a")  # the workflow is gone; one created again with its name is reconciled
    ctl.trigger("ns", "a")
    assert order[-1] == "pass ended"


def test_cleanup_gives_up_waiting_with_a_temporary_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller_module, "CLEANUP_WAIT_SECONDS", 0.01)
    ctl = Controller(Recorder(), Options())  # type: ignore[arg-type]
    ctl._state[("ns", "a")] = controller_module._KeyState(running=True)
    with pytest.raises(kopf.TemporaryError, match="still running"):
        ctl.cleanup("ns", "a", {}, {})


def test_a_pass_that_fails_at_the_api_still_counts_its_workflow_degraded() -> None:
    """An ApplyFailed pass reports Degraded in the status, then raises for the retry: the workflow gauge must
    count it Degraded too, or PhloWorkflowDegraded never fires for the commonest failure. (Found by the
    real Prometheus of tests/integration/test_prometheus_scrape.py: the gauge kept no Degraded series.)"""
    from phlo_operator.apply import ApiError

    class Refused:
        def reconcile(self, namespace: str, name: str) -> Result:
            exc = ApiError("apply", 404, "namespaces no-such-run-namespace not found")
            exc.conditions = [{"type": "Ready", "status": "False"}, {"type": "Degraded", "status": "True"}]
            raise exc

    def degraded() -> float:
        return metrics.WORKFLOWS.labels(condition="Degraded", status="True")._value.get()

    before = degraded()
    ctl = Controller(Refused(), Options())  # type: ignore[arg-type]
    ctl.trigger("ns", "refused")
    assert degraded() == before + 1
    state = ctl._state[("ns", "refused")]
    assert state.retry is not None  # still retried with backoff
    state.retry.cancel()
    ctl.forget("ns", "refused")


def test_kopf_never_gives_up_an_api_request_and_each_request_starts_over() -> None:
    """kopf's default backoffs end after eight retries (about a minute); a watch that escalates a 5xx or 403
    then ends its watcher task for good. Ours start as kopf's and continue every 30 s, afresh per request.
    Mutation: without the setting, kopf's default tuple ends after 8 delays (the first assert fails)."""
    import itertools

    settings = kopf.OperatorSettings()
    Controller(Recorder(), Options()).configure_kopf(settings)  # type: ignore[arg-type]
    backoffs = settings.networking.error_backoffs
    assert not isinstance(backoffs, (int, float))
    first = list(itertools.islice(iter(backoffs), 100))
    assert len(first) == 100, "kopf would escalate after these attempts"
    assert first[:8] == [1, 1, 2, 3, 5, 8, 13, 21] and set(first[8:]) == {30}
    assert list(itertools.islice(iter(backoffs), 3)) == [1, 1, 2], "a second request must start over"
