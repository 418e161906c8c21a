"""The operator's RBAC on a real API server equals the documented set: the chart's RBAC objects applied for
its ServiceAccount, then `kubectl auth can-i --list` as that ServiceAccount, in a watched namespace and in
another one, compared with the Permissions table of docs/operator.md."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import rbac_documented
from tests.helm_chart import template
from tests.testbed.cluster import Testbed

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
# What every authenticated identity may do (system:basic-user, system:discovery): not the operator's.
EVERYONE = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
_ROW = re.compile(r"^(\S+)\s+\[.*?\]\s+\[.*?\]\s+\[(.*)\]$")


@pytest.fixture
def operator_account(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The chart's ServiceAccount and RBAC (default values: namespaced mode), not the rest of the chart."""
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    objects = [o for o in template(tmp_path, namespace=namespace, release=release) if o["kind"] in RBAC_KINDS]
    testbed.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    yield f"system:serviceaccount:{namespace}:{account}"
    for obj in objects:
        if obj["kind"].startswith("Cluster"):
            testbed.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")


def can_i_list(testbed: Testbed, user: str, namespace: str) -> set[tuple[str, str, str]]:
    """`kubectl auth can-i --list` as the user: (API group, resource, verb) of every resource row."""
    out = testbed.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    grants: set[tuple[str, str, str]] = set()
    for line in out.splitlines()[1:]:
        if line.strip().startswith("["):
            continue  # no resource: a non-resource URL row (discovery, health)
        match = _ROW.match(line.strip())
        assert match, f"unexpected `kubectl auth can-i --list` row: {line!r}"
        name, verbs = match.groups()
        resource, _, group = name.partition(".")
        if "/" in group:  # a subresource is printed as resource.group/subresource
            group, _, sub = group.partition("/")
            resource = f"{resource}/{sub}"
        if resource.split("/")[0] in EVERYONE:
            continue
        grants |= {(group, resource, verb) for verb in verbs.split()}
    return grants


def test_the_operator_can_do_exactly_what_is_documented(
    testbed: Testbed, namespace: str, operator_account: str
) -> None:
    """Mutation (2026-12-06): "delete" added to the phloworkflows rule in rbac.py, then `make generate` (the
    chart renders rbac.py): this test failed (the ServiceAccount could delete phloworkflows, the table does
    not say so), and so did tests/unit/test_rbac_documented.py."""
    doc = rbac_documented.documented()
    cluster = {(g, r, v) for scope, g, r, v in doc if scope == "cluster"}
    everywhere = {(g, r, v) for _scope, g, r, v in doc}
    other = f"{namespace[:40]}-elsewhere"
    testbed.kubectl("create", "namespace", other)
    try:
        assert can_i_list(testbed, operator_account, namespace) == everywhere
        assert can_i_list(testbed, operator_account, other) == cluster
    finally:
        testbed.kubectl("delete", "namespace", other, "--wait=false", check=False)
