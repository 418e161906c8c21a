"""phlo_dagster.graphql, the one webserver GraphQL client (the operator's and `phlo dev`'s), and text.py."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from phlo_dagster import graphql
from phlo_dagster.text import first_line, last_line, one_line

pytestmark = pytest.mark.unit


def _answer(monkeypatch: pytest.MonkeyPatch, payload: dict[str, Any] | Exception) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []

    def post(base_url: str, query: str, variables: dict[str, Any], timeout: float) -> dict[str, Any]:
        calls.append((base_url, variables))
        if isinstance(payload, Exception):
            raise payload
        return payload

    monkeypatch.setattr(graphql, "post", post)
    return calls


def test_reload_returns_the_location_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"data": {"reloadRepositoryLocation": {"__typename": "WorkspaceLocationEntry", "name": "phlo"}}}
    calls = _answer(monkeypatch, entry)
    assert graphql.reload_location("http://web:3000", "phlo") == "WorkspaceLocationEntry"
    assert calls == [("http://web:3000", {"name": "phlo"})]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (OSError("connection refused"), "failed: connection refused"),
        (ValueError("not JSON"), "failed: not JSON"),
        ({"data": {"reloadRepositoryLocation": {"__typename": "PythonError", "message": "a\n b"}}}, "a b"),
        ({"errors": [{"message": "Cannot query field"}]}, "Cannot query field"),
        ({"data": {"reloadRepositoryLocation": {"__typename": "RepositoryLocationNotFound"}}}, "NotFound"),
    ],
)
def test_every_failure_is_one_reload_failed_naming_the_cause(
    monkeypatch: pytest.MonkeyPatch, payload: dict[str, Any] | Exception, needle: str
) -> None:
    _answer(monkeypatch, payload)
    with pytest.raises(graphql.ReloadFailed) as info:
        graphql.reload_location("http://web:3000", "phlo")
    message = str(info.value)
    assert message.startswith("reload of code location phlo at http://web:3000 ")
    assert needle in message and "\n" not in message


def test_post_against_nothing_listening_is_an_oserror() -> None:
    with pytest.raises(OSError):
        graphql.post("http://127.0.0.1:9", "query { __typename }", {}, timeout=2)


def test_the_shared_modules_import_only_the_standard_library() -> None:
    """The operator imports graphql, text and constants; its image has no Dagster, pydantic-settings or yaml
    for them to need."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import phlo_dagster.graphql, phlo_dagster.text, phlo_dagster.constants\n"
        "top = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "third = sorted(top - set(sys.stdlib_module_names) - {'phlo_dagster'})\n"
        "assert not third, third\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_one_line_folds_white_space_and_cuts_with_an_ellipsis() -> None:
    assert one_line("  a\n\tb   c \n") == "a b c"
    assert one_line("x" * 20, 10) == "xxxxxxx..."
    assert one_line("short", 10) == "short"


def test_first_and_last_line_skip_blank_lines() -> None:
    text = "\n  \n first \n middle\n last  \n\n"
    assert (first_line(text), last_line(text)) == ("first", "last")
    assert first_line("  \n") == last_line("") == ""
