"""spec.webserver.pathPrefix: passed to `phlo webserver --path-prefix`, followed by the readiness probe, the
operator's GraphQL URL and status.webserverUrl; /metrics stays at the root."""

from __future__ import annotations

from typing import Any

import pytest
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, components, shared

from phlo_dagster import constants as c

pytestmark = pytest.mark.unit


def wf(**webserver: Any) -> Workflow:
    spec = parse_spec({"image": "img:1", "webserver": webserver})
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=spec)


def container(w: Workflow) -> dict[str, Any]:
    return components.webserver_deployment(w, shared(w))["spec"]["template"]["spec"]["containers"][0]


def test_the_prefix_reaches_the_command_probe_and_urls() -> None:
    w = wf(pathPrefix="/teams/data")
    ctr = container(w)
    flag = ctr["command"].index("--path-prefix")
    assert ctr["command"][flag + 1] == "/teams/data"
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/teams/data/server_info", "port": "http"}
    assert w.webserver_url == "http://demo-webserver.team.svc:3000/teams/data"
    template = components.webserver_deployment(w, shared(w))["spec"]["template"]
    assert (
        template["metadata"]["annotations"]["prometheus.io/path"] == c.METRICS_PATH
    )  # served at the root too


def test_without_a_prefix_nothing_changes() -> None:
    w = wf()
    ctr = container(w)
    assert "--path-prefix" not in ctr["command"]
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/server_info"
    assert w.webserver_url == "http://demo-webserver.team.svc:3000"


@pytest.mark.parametrize("prefix", ["dagster", "/dagster/", "/", "/a b", "/a//b", "/x?y"])
def test_a_prefix_the_webserver_would_refuse_is_invalid(prefix: str) -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.webserver\.pathPrefix"):
        parse_spec({"image": "i", "webserver": {"pathPrefix": prefix}})


def test_the_pattern_agrees_with_the_webserver_cli() -> None:
    """phlo webserver refuses a prefix without a leading '/' or with a trailing one; so does the model."""
    from phlo_dagster.console import CliError
    from phlo_dagster.webserver import create_app

    for prefix in ("dagster", "/dagster/"):
        with pytest.raises(CliError):
            create_app(None, prefix)  # type: ignore[arg-type]  # refused before the context is used
