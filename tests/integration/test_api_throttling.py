"""The operator under API priority and fairness: its requests really answered 429 by the API server, and
workflows still end as in a clean run (issue 16, item 2: "409 conflicts and 429 throttling ... are retried
with backoff").

The operator runs as the chart's ServiceAccount with the chart's RBAC (a token kubeconfig, not the bed's admin
certificate, whose group system:masters is exempt from APF). A FlowSchema of this test sends every request of
that ServiceAccount to a PriorityLevelConfiguration of its own with one nominal share, nothing lent or
borrowed, and limitResponse Reject: whatever exceeds its few seats is refused at once with 429. The API
server's own apiserver_flowcontrol_rejected_requests_total for that level proves the rejections.

`make test` runs THROTTLE_WORKFLOWS=4; `make reliability` the count RELIABILITY.md quotes
(PHLO_THROTTLE_WORKFLOWS).
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm_chart import template
from tests.integration.test_faults import (
    all_ready,
    apply,
    children,
    differences,
    status_shape,
    workflow_docs,
    workflows,
)
from tests.integration.test_operator import Operator, wait_for
from tests.testbed.cluster import Testbed
from tests.testbed.pki import Pki

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm renders the chart's RBAC

WORKFLOWS = int(os.environ.get("PHLO_THROTTLE_WORKFLOWS", "4"))
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1"


def flow_objects(name: str, namespace: str, account: str) -> list[dict[str, Any]]:
    """A priority level with one nominal share (a few seats), none lent or borrowed, rejecting the excess;
    a FlowSchema, ahead of every built-in one but `exempt`, that sends all of the account's requests there."""
    return [
        {
            "apiVersion": FLOWCONTROL,
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        },
        {
            "apiVersion": FLOWCONTROL,
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "priorityLevelConfiguration": {"name": name},
                "matchingPrecedence": 200,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": account, "namespace": namespace},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        },
    ]


def flowcontrol_count(bed: Testbed, metric: str, level: str) -> float:
    """The API server's own counter (e.g. apiserver_flowcontrol_rejected_requests_total) for one priority
    level, summed over its other labels (flow schema, reason)."""
    total = 0.0
    for line in bed.kubectl("get", "--raw", "/metrics", timeout=60).stdout.splitlines():
        if line.startswith(metric + "{") and f'priority_level="{level}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def operator_account(testbed: Testbed, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(namespace, ServiceAccount): the chart's RBAC for its ServiceAccount in a namespace of its own;
    removed afterwards, with any cluster-scoped object a test lists in `cluster_objects`."""
    namespace = f"retries-{secrets.token_hex(3)}"
    testbed.kubectl("create", "namespace", namespace)
    release = f"rt-{secrets.token_hex(3)}"
    objects = [o for o in template(tmp_path, namespace=namespace, release=release) if o["kind"] in RBAC_KINDS]
    (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    apply_list(testbed, objects)
    try:
        yield namespace, account
    finally:
        for obj in objects:
            if obj["kind"].startswith("Cluster"):
                delete(testbed, obj)
        testbed.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def apply_list(bed: Testbed, objects: list[dict[str, Any]]) -> None:
    bed.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def delete(bed: Testbed, obj: dict[str, Any]) -> None:
    """Delete one cluster-scoped object by kind and name."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower() + (f".{group}" if group else "")
    bed.kubectl("delete", kind, obj["metadata"]["name"], "--ignore-not-found", check=False)


def operator_as(bed: Testbed, account: tuple[str, str], log: Path) -> Operator:
    """The operator as the ServiceAccount (a bound token), watching the account's namespace."""
    namespace, name = account
    kubeconfig = bed.kubeconfig_for_token(bed.token(namespace, name))
    return Operator(bed, [namespace], log, env={"KUBECONFIG": str(kubeconfig)}, args=["--standalone"])


def test_throttled_operator_retries_with_backoff_and_ends_as_a_clean_run(
    testbed: Testbed,
    crds: None,
    namespace: str,
    operator_account: tuple[str, str],
    tmp_path: Path,
    record_property: Any,
) -> None:
    """THROTTLE_WORKFLOWS workflows with dbt reconcile under an operator whose every request goes through a
    priority level of a few seats that rejects the excess. The API server rejects some of its requests
    (its own counter > 0, some of them the operator's own calls, which phlo_operator_api_retries_total
    counts); every workflow ends Ready with the same children and status shape as a clean run of the same
    workflows under an unthrottled operator; the operator process is the one started; its log shows
    retries and no traceback.

    Mutation (2026-12-06): RetryPolicy.retryable returning False (no retry of a single call; the failed pass
    is retried by the controller from 10 s, doubling): this test failed ("22 rejections, none of them the
    operator's own calls retried")."""
    clean_ns = namespace
    throttled_ns, account = operator_account
    level = f"phlo-throttled-{secrets.token_hex(3)}"
    docs = workflow_docs(WORKFLOWS)
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PhloWorkflow"}

    clean = Operator(testbed, [clean_ns], tmp_path / "clean.log", args=["--standalone"]).start()
    try:
        apply(testbed, clean_ns, docs)
        wait_for("the clean run Ready", lambda: all_ready(testbed, clean_ns, names), timeout=300, every=2)
    finally:
        clean.stop()

    flow = flow_objects(level, throttled_ns, account)
    apply_list(testbed, flow)
    started = time.monotonic()
    op = operator_as(testbed, operator_account, tmp_path / "throttled.log")
    try:
        op.start()
        pid = op.proc.pid if op.proc else 0
        dispatched = flowcontrol_count(testbed, "apiserver_flowcontrol_dispatched_requests_total", level)
        seats = flowcontrol_count(testbed, "apiserver_flowcontrol_nominal_limit_seats", level)
        assert dispatched > 0, "the operator's requests do not reach the test's priority level"
        apply(testbed, throttled_ns, docs)
        wait_for(
            "the throttled run Ready", lambda: all_ready(testbed, throttled_ns, names), timeout=600, every=2
        )
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 120  # the last writes may still be landing
        while differences(testbed, clean_ns, throttled_ns) and time.monotonic() < deadline:
            time.sleep(2)
        retries = op.metric("phlo_operator_api_retries_total", code="429")
        failed = op.metric("phlo_operator_api_errors_total", code="429")
        assert op.proc is not None and op.proc.poll() is None and op.proc.pid == pid, op.tail()
        rejected = flowcontrol_count(testbed, "apiserver_flowcontrol_rejected_requests_total", level)
    finally:
        op.stop()
        for obj in flow:
            delete(testbed, obj)

    assert rejected > 0, "APF never rejected the operator: the test proves nothing"
    assert retries > 0, f"{rejected:.0f} rejections, none of them the operator's own calls retried"
    assert differences(testbed, clean_ns, throttled_ns) == {}
    jobs = [name for kind, name in children(testbed, throttled_ns) if kind == "Job"]
    kinds = sorted(n.rsplit("-", 2)[1] for n in jobs)  # <workflow>-dbt-<hash>, <workflow>-version-<hash>
    assert kinds == sorted(["dbt", "version"] * WORKFLOWS), (
        f"one dbt and one version Job per workflow: {sorted(jobs)}"
    )
    assert {n: status_shape(cr) for n, cr in workflows(testbed, throttled_ns).items()} == {
        n: status_shape(cr) for n, cr in workflows(testbed, clean_ns).items()
    }
    log = (tmp_path / "throttled.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    retry_lines = len(re.findall(r"answered HTTP 429 .*; retry \d+ of \d+ in", log))
    assert retry_lines >= retries, "each retry is logged (the log also holds those after the last scrape)"
    record_property("throttling", {"workflows": WORKFLOWS, "rejected": rejected, "retries": retries})
    sys.stderr.write(
        f"throttling: {WORKFLOWS} workflows Ready in {seconds:.0f} s under APF; the API server rejected "
        f"{rejected:.0f} requests of the operator (level {level}, {seats:.0f} seats); its client "
        f"retried {retries:.0f} calls after a backoff ({failed:.0f} gave up and failed their pass); "
        f"one operator process (pid {pid})\n"
    )


# -- 409 Conflict: where the operator can meet one, forced for real


class JobRace:
    """A mutating admission webhook (HTTPS on 127.0.0.1, the bed's serving certificate) that, when the
    operator creates a Job, first creates the very same Job itself as the bed's admin, then admits the
    operator's request: the API server then answers the operator 409 AlreadyExists, the race a second
    writer (a previous operator killed after its POST landed) would win. No patch is returned: the request
    goes on unchanged to the storage that refuses it."""

    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.raced: list[str] = []
        self.errors: list[str] = []
        race = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                if not request.get("dryRun"):
                    race.create_first(request["object"])
                answer = {"uid": request["uid"], "allowed": True}
                body = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        pki = Pki(bed.directory / "pki")
        context.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def create_first(self, obj: dict[str, Any]) -> None:
        meta = {
            k: v for k, v in obj["metadata"].items() if k not in ("uid", "resourceVersion", "managedFields")
        }
        out = self.bed.kubectl(
            "create", "-f", "-", input=json.dumps({**obj, "metadata": meta}), check=False, timeout=20
        )
        if out.returncode == 0:
            self.raced.append(meta["name"])
        else:
            self.errors.append(f"{meta['name']}: {out.stderr.strip()}")

    def configuration(self, name: str, namespace: str, account: str) -> dict[str, Any]:
        port = self.server.server_address[1]
        user = f"system:serviceaccount:{namespace}:{account}"
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "job-race.phlo.dev",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/race",
                        "caBundle": base64.b64encode(self.bed.ca_file.read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": ["batch"],
                            "apiVersions": ["v1"],
                            "resources": ["jobs"],
                            "scope": "Namespaced",
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "matchConditions": [
                        {"name": "the-operator", "expression": f"request.userInfo.username == '{user}'"}
                    ],
                    "sideEffects": "NoneOnDryRun",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 20,
                }
            ],
        }

    def __enter__(self) -> JobRace:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_conflicts_are_answers_not_failures(
    testbed: Testbed, crds: None, operator_account: tuple[str, str], tmp_path: Path, record_property: Any
) -> None:
    """Where the operator can meet 409, each forced on the bed:

    - Creating a dbt-compile Job that another writer created a moment earlier (a webhook creates it first):
      the API server answers the operator's POST 409 AlreadyExists, counted in
      phlo_operator_api_errors_total{verb="post",code="409"}; the operator takes the existing Job as the one
      it meant (its name carries the hash of its inputs), follows it to completion, never creates a second
      one, and every workflow ends Ready.
    - A second field manager on a child: `kubectl apply --server-side --field-manager=intruder` without
      --force-conflicts is refused (409 naming the operator's manager: the operator owns those fields);
      with it, the intruder takes the field, and the operator (which always applies with force) takes it
      back without any 409 of its own.

    Its merge patches (status, owner references) carry no resourceVersion, so a stale-resourceVersion 409
    cannot happen to them; a 409 on a PATCH would be retried (tests/unit/test_retry.py).

    Mutation (2026-12-06): Kube.create raising on 409 instead of returning False: this test failed (the
    workflows still ended Ready, one pass later, but 4 reconcile passes had failed)."""
    namespace, account = operator_account
    docs = workflow_docs(WORKFLOWS)
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PhloWorkflow"}
    webhook = f"phlo-job-race-{secrets.token_hex(3)}"
    with JobRace(testbed) as race:
        configuration = race.configuration(webhook, namespace, account)
        apply_list(testbed, [configuration])
        op = operator_as(testbed, operator_account, tmp_path / "operator.log")
        try:
            op.start()
            pid = op.proc.pid if op.proc else 0
            apply(testbed, namespace, docs)
            wait_for(
                "every workflow Ready", lambda: all_ready(testbed, namespace, names), timeout=300, every=2
            )
            delete(testbed, configuration)
            conflicts = op.metric("phlo_operator_api_errors_total", verb="post", code="409")
            failed_passes = op.metric("phlo_operator_reconciles_total", result="error")
            jobs = [name for kind, name in children(testbed, namespace) if kind == "Job"]

            # A second field manager on a child the operator applies.
            configmap = f"{sorted(names)[0]}-workspace"
            intruder = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": configmap, "namespace": namespace},
                "data": {"workspace.yaml": "intruded\n"},
            }
            refused = testbed.kubectl(
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "-f",
                "-",
                input=json.dumps(intruder),
                check=False,
            )
            testbed.kubectl(
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "--force-conflicts",
                "-f",
                "-",
                input=json.dumps(intruder),
            )

            def restored() -> bool:
                out = testbed.kubectl("-n", namespace, "get", "configmap", configmap, "-o", "json")
                return json.loads(out.stdout)["data"]["workspace.yaml"] != "intruded\n"

            wait_for("the operator to take its field back", restored, timeout=60)
            patch_conflicts = op.metric("phlo_operator_api_errors_total", verb="patch", code="409")
            patch_retries = op.metric("phlo_operator_api_retries_total", code="409")
            assert op.proc is not None and op.proc.poll() is None and op.proc.pid == pid, op.tail()
        finally:
            op.stop()
            delete(testbed, configuration)

    assert race.errors == [], race.errors
    # every Job raced: each workflow's dbt-compile gate and its Dagster version gate
    assert len(race.raced) == 2 * WORKFLOWS, race.raced
    assert conflicts == 2 * WORKFLOWS, (
        f"the operator met {conflicts:.0f} 409s for {len(race.raced)} raced Jobs"
    )
    assert sorted(jobs) == sorted(race.raced), "one Job of each per workflow"
    assert failed_passes == 0, "a 409 on create failed a reconcile pass"
    assert refused.returncode != 0 and "conflict" in refused.stderr.lower(), refused.stderr
    assert "phlo-dagster-operator" in refused.stderr, refused.stderr
    assert patch_conflicts == 0 and patch_retries == 0
    log = (tmp_path / "operator.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    record_property("conflicts", {"raced_jobs": len(race.raced), "conflicts": conflicts})
    sys.stderr.write(
        f"conflicts: {len(race.raced)} Jobs created first by another writer, the operator answered 409 "
        f"{conflicts:.0f} times, kept {len(jobs)} Jobs, all {WORKFLOWS} workflows Ready; an intruding field "
        "manager was refused without force and undone with it, the operator meeting no 409\n"
    )
