"""Status computed from observed children given as plain dicts."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator import status as st

pytestmark = pytest.mark.unit


def dep(
    replicas: int = 1,
    updated: int = 1,
    available: int = 1,
    total: int | None = None,
    gen: int = 2,
    observed: int = 2,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "replicas": updated if total is None else total,
            "conditions": conditions or [],
        },
    }


STS_READY = {
    "metadata": {"generation": 1},
    "spec": {"replicas": 1},
    "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1},
}


def all_ready(**kw: Any) -> st.Observed:
    base: dict[str, Any] = dict(
        generation=3,
        deployments={"webserver": dep(), "daemon": dep(), "code-server": dep()},
        postgres=STS_READY,
    )
    base.update(kw)
    return st.Observed(**base)


def cond(obs: st.Observed, type_: str) -> dict[str, Any]:
    return next(c for c in st.conditions(obs) if c["type"] == type_)


@pytest.mark.parametrize(
    ("d", "ok", "reason"),
    [
        (dep(), True, "Available"),
        (None, False, "NotFound"),
        (dep(observed=1), False, "RollingOut"),
        (dep(replicas=2, updated=1, available=1), False, "RollingOut"),
        (dep(total=2), False, "RollingOut"),
        (dep(available=0), False, "Unavailable"),
        (
            dep(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            False,
            "ProgressDeadlineExceeded",
        ),
    ],
)
def test_deployment_check(d: dict[str, Any] | None, ok: bool, reason: str) -> None:
    check = st.deployment_check(d)
    assert (check.ok, check.reason) == (ok, reason)


def test_ready_when_every_component_is_available() -> None:
    obs = all_ready()
    assert cond(obs, "Ready")["status"] == "True"
    assert cond(obs, "Degraded")["status"] == "False"
    assert cond(obs, "Progressing")["status"] == "False"
    assert {c["type"] for c in st.conditions(obs)} >= {
        "Ready",
        "Progressing",
        "Degraded",
        "WebserverReady",
        "DaemonReady",
        "CodeServerReady",
        "DbtCompiled",
    }


def test_invalid_spec_is_degraded_and_not_ready() -> None:
    obs = st.Observed(generation=1, invalid="spec.env: X is set by the operator")
    assert cond(obs, "Degraded") | {} == {**cond(obs, "Degraded"), "status": "True", "reason": "InvalidSpec"}
    assert cond(obs, "Ready")["reason"] == "InvalidSpec"


def test_failed_job_degrades_while_previous_code_server_keeps_serving() -> None:
    job = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        }
    }
    dbt = st.job_observation(job, "abc", "demo-dbt-abc")
    assert dbt.state == "Failed" and dbt.reason == "BackoffLimitExceeded"
    obs = all_ready(dbt=dbt, code_server_gated=True)
    assert cond(obs, "Degraded")["reason"] == "DbtCompileFailed"
    assert (
        "BackoffLimitExceeded" in cond(obs, "Degraded")["message"]
        or "backoff" in cond(obs, "Degraded")["message"]
    )
    assert cond(obs, "DbtCompiled")["status"] == "False"
    assert cond(obs, "Ready")["status"] == "True"  # the previous code server still serves


def test_job_outcomes() -> None:
    done = {"status": {"completionTime": "t", "conditions": [{"type": "Complete", "status": "True"}]}}
    assert st.job_observation(done, "h", "j").state == "Succeeded"
    assert st.job_observation(done, "h", "j").completion_time == "t"
    assert st.job_observation({"status": {}}, "h", "j").state == "Running"
    assert st.job_observation(None, "h", "j").state == "Pending"


def test_compiling_blocks_ready_for_a_new_workflow() -> None:
    obs = all_ready(
        deployments={"webserver": dep(), "daemon": dep(), "code-server": None},
        dbt=st.DbtObservation("Running", "j", "h", "Running", "compiling"),
    )
    assert cond(obs, "Ready")["reason"] == "DbtCompiling"
    assert cond(obs, "Progressing") | {} == {
        **cond(obs, "Progressing"),
        "status": "True",
        "reason": "DbtCompiling",
    }


def test_suspended() -> None:
    obs = all_ready(suspended=True)
    assert cond(obs, "Ready")["reason"] == "Suspended"
    assert cond(obs, "WebserverReady")["reason"] == "Suspended"


def test_storage_problems() -> None:
    obs = all_ready(storage_problem="Secret 'pg' lacks keys: host", managed_postgres=False)
    assert cond(obs, "Degraded")["reason"] == "StorageSecretInvalid"
    assert cond(obs, "Ready")["status"] == "False"
    assert cond(all_ready(postgres=None), "StorageReady")["reason"] == "NotFound"
    lost = all_ready(storage_problem="Secret 'q-postgres' is missing", storage_reason="StorageSecretLost")
    assert cond(lost, "Degraded")["reason"] == "StorageSecretLost"
    assert cond(lost, "StorageReady")["reason"] == "StorageSecretLost"
    first = st.compute(all_ready(), {}, "t1")
    events = st.transitions(first, st.compute(lost, first, "t2"))
    assert ("Degraded", "Warning", "StorageSecretLost") in {e[:3] for e in events}


def test_timestamps_are_kept_until_status_flips_so_unchanged_status_is_equal() -> None:
    first = st.compute(all_ready(), {}, "t1")
    again = st.compute(all_ready(), first, "t2")
    assert again == first  # nothing to write
    flipped = st.compute(
        all_ready(deployments={"webserver": None, "daemon": dep(), "code-server": dep()}), first, "t3"
    )
    ready = st.condition(flipped, "Ready")
    assert ready is not None and ready["lastTransitionTime"] == "t3" and ready["observedGeneration"] == 3
    daemon = st.condition(flipped, "DaemonReady")
    assert daemon is not None and daemon["lastTransitionTime"] == "t1"


def test_events_on_transitions_only() -> None:
    first = st.compute(all_ready(deployments={}), {}, "t1")
    assert st.transitions({}, first) == []  # a new workflow being created is not news
    ready = st.compute(all_ready(), first, "t2")
    assert [(e[1], e[2]) for e in st.transitions(first, ready)] == [("Normal", "Ready")]
    assert st.transitions(ready, ready) == []
    broken = st.compute(
        all_ready(dbt=st.DbtObservation("Failed", "j", "h", "BackoffLimitExceeded", "boom")), ready, "t3"
    )
    kinds = {(e[0], e[1], e[2]) for e in st.transitions(ready, broken)}
    assert ("Degraded", "Warning", "DbtCompileFailed") in kinds
