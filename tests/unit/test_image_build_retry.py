"""tests/images: a build that failed for a transient reason runs again; other failures are raised at once."""

from __future__ import annotations

import io

import pytest

from tests.images import build

pytestmark = pytest.mark.unit


def _failing(messages: list[str], calls: list[tuple[str, ...]]):  # type: ignore[no-untyped-def]
    def buildah(*args: str, out: io.TextIOBase | None = None, capture: bool = False) -> str:
        calls.append(args)
        if messages:
            raise RuntimeError(messages.pop(0))
        return ""

    return buildah


def test_a_transient_failure_builds_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation (2026-12-06): calling buildah once, as before, fails this test with the memfd error."""
    calls: list[tuple[str, ...]] = []
    busy = "Close_Fd sealing memfd copy: Device or resource busy"
    monkeypatch.setattr(build, "buildah", _failing([busy], calls))
    out = io.StringIO()
    build.build_retrying(["build", "."], out)
    assert len(calls) == 2 and "building again" in out.getvalue()


def test_any_other_failure_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(build, "buildah", _failing(["STEP 3: pip install: No matching distribution"], calls))
    with pytest.raises(RuntimeError, match="No matching distribution"):
        build.build_retrying(["build", "."], io.StringIO())
    assert len(calls) == 1
