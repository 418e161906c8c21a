"""spec.webserver.readOnly: a second webserver Deployment and Service running `phlo webserver
--read-only`, with the webserver's settings and hardening, admitted to the code server, never behind the
Ingress or the proxy."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, render_all

from phlo_dagster import cli
from tests.unit.test_render_auth import AUTH

pytestmark = pytest.mark.unit


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def objects(w: Workflow) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render_all(w).objects}


def test_a_read_only_webserver_has_its_own_deployment_and_service() -> None:
    w = wf(
        webserver={
            "pathPrefix": "/dagster",
            "readOnly": {"enabled": True, "replicas": 2},
            "nodeSelector": {"pool": "ui"},
        },
        auth=AUTH,
        ingress={"enabled": True},
    )
    found = objects(w)
    dep = found[("Deployment", "demo-webserver-ro")]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "webserver-ro"
    pod = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["webserver"]  # no auth proxy
    cmd = pod["containers"][0]["command"]
    assert cmd[-1] == "--read-only" and "/dagster" in cmd
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["nodeSelector"] == {"pool": "ui"}
    svc = found[("Service", "demo-webserver-ro")]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "webserver-ro"
    main = found[("Deployment", "demo-webserver")]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--read-only" not in main
    # The Ingress still routes only to the main webserver.
    backend = found[("Ingress", "demo-webserver")]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "demo-webserver"
    # The read-only webserver loads the code: the code server admits it.
    (policy,) = [
        o
        for o in render_all(w).objects
        if o["metadata"]["name"] == "demo-code-server" and o["kind"] == "NetworkPolicy"
    ]
    readers = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert readers == ["webserver", "daemon", "webserver-ro"]


def test_disabled_renders_nothing_and_deletes_an_old_one() -> None:
    w = wf()
    assert not [k for k in objects(w) if k[1] == "demo-webserver-ro"]
    absent = render_all(w).absent
    assert ("apps/v1", "Deployment", "team", "demo-webserver-ro") in absent
    assert ("v1", "Service", "team", "demo-webserver-ro") in absent


def test_suspend_scales_it_to_zero() -> None:
    w = wf(webserver={"readOnly": {"enabled": True, "replicas": 3}}, suspend=True)
    assert objects(w)[("Deployment", "demo-webserver-ro")]["spec"]["replicas"] == 0


def test_bad_replicas_are_named() -> None:
    with pytest.raises(InvalidSpec, match=r"spec\.webserver\.readOnly\.replicas"):
        wf(webserver={"readOnly": {"enabled": True, "replicas": -1}})


def test_phlo_webserver_passes_read_only_to_dagster(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("phlo_dagster.webserver.serve", lambda *a, **kw: seen.update(kw))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from: []\n")
    result = CliRunner().invoke(
        cli.cli, ["webserver", "--port", "1", "--workspace", str(workspace), "--read-only"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"read_only": True}
    CliRunner().invoke(cli.cli, ["webserver", "--port", "1", "--workspace", str(workspace)])
    assert seen == {"read_only": False}


def test_the_auth_secret_rolls_the_webserver_but_not_the_read_only_one() -> None:
    from tests.unit.test_reconcile import NAME, NS, Bed
    from tests.unit.test_render_auth import SSO

    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sso", "key": "client-id"}}}]
    bed = Bed(dbt={"enabled": False}, auth=AUTH, webserver={"readOnly": {"enabled": True}, "env": env})
    bed.kube.add(SSO)
    bed.run()

    def rolls(component: str) -> str:
        obj = bed.kube.get(("apps/v1", "Deployment", NS, f"{NAME}-{component}"))
        return obj["spec"]["template"]["metadata"]["annotations"].get("phlo.dev/referenced-checksum", "")

    before = {c: rolls(c) for c in ("webserver", "webserver-ro")}
    assert before["webserver-ro"] and before["webserver"] != before["webserver-ro"]
    bed.kube.add({**SSO, "data": {**SSO["data"], "cookie-secret": "b3RoZXI="}})
    bed.run()
    assert rolls("webserver") != before["webserver"] and rolls("webserver-ro") == before["webserver-ro"]
    bed.kube.add({**SSO, "data": {**SSO["data"], "client-id": "b3RoZXI="}})
    bed.run()
    assert rolls("webserver-ro") != before["webserver-ro"]  # its env reads client-id
