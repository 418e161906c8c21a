"""The retry policy of one API call (429 throttled, 409 on a patch), and Kube sending a call again under it.

The bed proves it against API priority and fairness (tests/integration/test_api_throttling.py); these pin the
arithmetic and which answers are retried."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from phlo_operator.apply import ApiError, Kube
from phlo_operator.retry import RetryPolicy, retry_after

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("method", "code", "retried"),
    [
        ("GET", 429, True),
        ("POST", 429, True),
        ("PATCH", 429, True),
        ("DELETE", 429, True),
        ("PATCH", 409, True),
        ("POST", 409, False),  # AlreadyExists is an answer: Kube.create reads it as "exists"
        ("DELETE", 409, False),
        ("GET", 500, False),
        ("PATCH", 422, False),
        ("GET", 404, False),
    ],
)
def test_which_answers_are_retried(method: str, code: int, retried: bool) -> None:
    assert RetryPolicy().retryable(method, code) is retried


def test_backoff_doubles_with_jitter_under_a_cap_and_stops() -> None:
    policy = RetryPolicy(retries=6, base=0.5, cap=4.0)
    low = [policy.delay(n, rand=lambda: 0.0) for n in range(1, 7)]
    high = [policy.delay(n, rand=lambda: 1.0) for n in range(1, 7)]
    assert high == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]  # never zero: no burst of immediate resends
    assert policy.delay(7) is None and policy.delay(0) is None


def test_retry_after_is_a_floor_and_is_capped() -> None:
    policy = RetryPolicy(retries=3, base=0.5, cap=10.0)
    assert policy.delay(1, retry_after=3, rand=lambda: 0.5) == 3.0
    assert policy.delay(1, retry_after=0.1, rand=lambda: 1.0) == 0.5  # below the backoff: the backoff
    assert policy.delay(1, retry_after=3600, rand=lambda: 0.0) == 10.0


@pytest.mark.parametrize(
    ("headers", "body", "seconds"),
    [
        ({"Retry-After": "1"}, None, 1.0),
        ({"retry-after": "2.5"}, None, 2.5),
        ({}, {"details": {"retryAfterSeconds": 4}}, 4.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None, None),
        ({"Retry-After": "-3"}, None, None),
        (None, {"details": "odd"}, None),
        (None, None, None),
    ],
)
def test_retry_after_from_header_or_status(headers: Any, body: Any, seconds: float | None) -> None:
    assert retry_after(headers, body) == seconds


class Answers:
    """An ApiClient whose call_api plays a list of HTTP answers (an int: an error code; else success)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers, self.calls = list(answers), 0

    def call_api(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            exc = ApiException(status=answer, reason="Too Many Requests" if answer == 429 else "Conflict")
            exc.headers = {"Retry-After": "1"} if answer == 429 else {}
            exc.body = json.dumps({"kind": "Status", "message": f"answer {answer}"})
            raise exc

        class Response:
            data = json.dumps(answer).encode()

        return Response()


def kube(
    answers: list[Any],
) -> tuple[Kube, Answers, list[float], list[tuple[str, int]], list[tuple[str, int]]]:
    client = Answers(answers)
    slept: list[float] = []
    retries: list[tuple[str, int]] = []
    errors: list[tuple[str, int]] = []
    k = Kube(
        client,  # type: ignore[arg-type]
        on_error=lambda verb, code: errors.append((verb, code)),
        on_retry=lambda verb, code: retries.append((verb, code)),
        policy=RetryPolicy(retries=3, base=0.5, cap=10.0),
        sleep=slept.append,
    )
    return k, client, slept, retries, errors


def test_a_throttled_call_is_sent_again_after_retry_after_and_counted() -> None:
    """Mutation (2026-12-06): RetryPolicy.retryable returning False (one attempt per call) failed this
    test and the two below (ApiError on the first 429 or 409)."""
    k, client, slept, retries, errors = kube([429, 429, {"kind": "ConfigMap"}])
    assert k.request("GET", "/api/v1/namespaces/a/configmaps/b") == {"kind": "ConfigMap"}
    assert client.calls == 3
    assert all(s >= 1.0 for s in slept) and len(slept) == 2  # the server's Retry-After: 1 is the floor
    assert retries == [("get", 429), ("get", 429)] and errors == []


def test_a_conflict_on_a_patch_is_retried_but_not_on_a_create() -> None:
    k, client, _, retries, _ = kube([409, {"kind": "Deployment"}])
    assert k.request("PATCH", "/apis/apps/v1/namespaces/a/deployments/b", {}) == {"kind": "Deployment"}
    assert retries == [("patch", 409)]
    k, client, slept, retries, errors = kube([409])
    assert (
        k.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "a"}})
        is False
    )
    assert client.calls == 1 and slept == [] and retries == [] and errors == [("post", 409)]


def test_retries_run_out_into_an_api_error() -> None:
    k, client, slept, retries, errors = kube([429, 429, 429, 429])
    with pytest.raises(ApiError) as raised:
        k.request("POST", "/api/v1/namespaces/a/events", {})
    assert raised.value.code == 429 and "answer 429" in str(raised.value)
    assert client.calls == 4 and len(slept) == 3 and errors == [("post", 429)]
    assert retries == [("post", 429)] * 3
