"""When one Kubernetes API call is sent again, and after how long (pure: no clock, no I/O).

Two answers are worth a quick second try inside the reconcile pass instead of failing the whole pass (which
the controller retries from 10 s, doubling):

- 429 Too Many Requests, for any verb: API priority and fairness (or a rate limiter in front of the API
  server) refused the request before it was processed, so sending it again cannot apply anything twice.
  The server's Retry-After is honoured as a floor.
- 409 Conflict on a PATCH: the operator's patches (server-side apply with force, JSON merge patches) carry no
  resourceVersion, so a 409 there means a concurrent write won a race the API server's own retries did not
  settle; sending the same patch again is safe. A 409 on a POST is an answer, not a race (the object
  exists: `Kube.create` treats it as such), and is never retried.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping

TOO_MANY_REQUESTS = 429
CONFLICT = 409


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """At most `retries` second tries of one call; before retry n (1-based) a wait drawn uniformly from
    [ceiling/2, ceiling], ceiling = min(cap, base * 2**(n-1)) ("equal jitter": never zero, never in lock
    step with the other workers that were refused at the same moment). A Retry-After from the server raises
    the wait to at least that (still capped, so one answer cannot park a worker for minutes)."""

    retries: int = 5
    base: float = 0.5
    cap: float = 10.0

    def retryable(self, method: str, code: int) -> bool:
        if code == TOO_MANY_REQUESTS:
            return True
        return code == CONFLICT and method.upper() == "PATCH"

    def delay(
        self, retry: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry number `retry` (1-based); None when no retry is left."""
        if retry < 1 or retry > self.retries:
            return None
        ceiling = min(self.cap, self.base * 2.0 ** (retry - 1))
        wait = ceiling / 2 + rand() * ceiling / 2
        if retry_after is not None and retry_after > wait:
            wait = min(self.cap, retry_after)
        return wait


def retry_after(headers: Mapping[str, str] | None, body: Mapping[str, object] | None = None) -> float | None:
    """The server's requested wait in seconds: the Retry-After header (seconds; an HTTP date is not sent by
    the API server and is ignored), else a Status body's details.retryAfterSeconds; None when absent or not
    a non-negative number."""
    value: object = None
    for key, header in (headers or {}).items():
        if key.lower() == "retry-after":
            value = header
    if value is None and body:
        details = body.get("details")
        value = details.get("retryAfterSeconds") if isinstance(details, Mapping) else None
    try:
        seconds = float(str(value)) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
