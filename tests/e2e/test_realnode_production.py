"""Production settings of issue 12 proven in running pods on the real node.

A private registry on the node (tests/testbed/registry.py: distribution's registry with htpasswd basic auth,
the node's containerd pointed at it) holds the quickstart's image, pushed there with the registry's
credentials and then removed from the node under that name. Its own operator release and one PhloWorkflow
`prod` (that image, cluster_flow gives this module a namespace of its own), shared by the tests:
- `imagePullSecrets` names a kubernetes.io/dockerconfigjson Secret with the registry's credentials.
- `codeServer.podOverrides` adds a ConfigMap volume and mounts it into the code-server container;
  `runLauncher.runs.podOverrides` adds the same volume to run pods.
- `runLauncher.runs` gives run pods a nodeSelector (a label no node carries when the run is launched) and
  resources of their own.

1. The code-server pod carries the volume and the mount, and a file read through `kubectl exec` in the running
   container holds the ConfigMap's value (a token of this module).
2. A run launched through GraphQL gets a pod that stays Pending, the scheduler reporting that no node matches
   its node selector; once the real node is labelled, the same pod is scheduled there and the run succeeds.
   The pod has the nodeSelector, the resources and the volume of spec.runLauncher.runs; the code server (no
   selector of its own) never had the label's selector.
3. Every pod of the workflow (webserver, daemon, code server, managed PostgreSQL, the dbt Job, the run)
   names the pull Secret, the kubelet reports pulling the image from the registry, and the node's containerd
   holds it under the registry's name. A pod of the same image without the Secret fails to pull it
   (ErrImagePull or ImagePullBackOff: "authorization failed: no basic auth credentials"): the Secret's
   mutation, checked on every run.

4. Compute logs go to an S3 server on the node (tests/testbed/s3.py: gofakes3 over HTTP, accepting only the
   access key id of the Secret `spec.computeLogs.s3.secretName` names). After a run, the webserver's GraphQL
   (`capturedLogs`, what the UI's log viewer asks) returns the step's stderr, which the run pod wrote: the
   webserver can only have read it from the bucket, and the server's log shows the run pod's PUTs and the
   webserver's GETs, none refused.

5. The UI sits under `webserver.pathPrefix` behind `spec.auth` (oauth2-proxy, its default image built from the
   bed's binary) and `spec.ingress` of class skipper, an Ingress controller running as a pod on the node's
   network (tests/e2e/ingress.py). From this host, as from outside the cluster: the UI and GraphQL get the
   proxy's sign-in page (403); the OpenID Connect sign-in against the node's provider (tests/testbed/oidc.py)
   sets a session cookie, and the same URLs then serve the Dagster UI and answer GraphQL. The provider's log
   shows the proxy's pod redeeming the code. Tests 2 and 4 reach GraphQL through the Service's port `direct`
   (the webserver itself, as the operator does).

Mutation check (run once, red): without `podOverrides` in the codeServer spec, test 1 failed on the missing
volume; without `runLauncher.runs.nodeSelector`, test 2 failed waiting for an unschedulable run pod (the pod
was scheduled at once); test 3's pod without the Secret is its own mutation.

Measured (2 cores shared with three other helpers, load 12-34): 7.4-7.7 min for the module with its own bed
(bed 63-70 s, registry start and push 8-10 s, workflow Ready 186-292 s, the run 82-97 s after the label).
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from phlo_operator.model import OAUTH2_PROXY_IMAGE

from tests.e2e import flow
from tests.e2e import ingress as skipper
from tests.e2e.conftest import report_figures
from tests.e2e.flow import Cluster, FlowError
from tests.testbed import oidc as oidc_provider
from tests.testbed import realnode
from tests.testbed import registry as private_registry
from tests.testbed import s3 as s3_server
from tests.testbed.oidc import Provider
from tests.testbed.pki import NODE_NAME
from tests.testbed.realnode import RealNode
from tests.testbed.registry import Registry
from tests.testbed.s3 import S3

VERSION = flow.version()
IMAGE = f"phlo-dagster:{VERSION}"
PULL_SECRET = "registry-credentials"
# The quickstart's image as the private registry serves it (the registry's address is the node's).
PRIVATE_IMAGE = f"{realnode.NODE_ADDRESS}:{private_registry.PORT}/phlo/phlo-dagster:{VERSION}"
WORKFLOW = "prod"
CRD = "crd/phloworkflows.phlo.dev"
CONFIGMAP = "e2e-extra"
MOUNT = "/etc/phlo-extra"
TOKEN = secrets.token_hex(8)
# A node label of this module's own: the run pods require it, and no node has it until test 2 sets it.
RUN_LABEL = ("e2e.phlo.dev/runs", f"pool-{secrets.token_hex(3)}")
RUN_RESOURCES = {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"memory": "1536Mi"}}
EXTRA_VOLUME = {"name": "extra", "configMap": {"name": CONFIGMAP}}
EXTRA_MOUNT = {"name": "extra", "mountPath": MOUNT, "readOnly": True}

S3_SECRET = "s3-credentials"
S3_PREFIX = "prod-runs"

PREFIX = "/dagster"  # webserver.pathPrefix: the UI and GraphQL under it, through the Ingress too
AUTH_SECRET = "auth-proxy"
# The Service's port `direct` (auth.port): the webserver itself; port-forward reaches it without sign-in.
DIRECT_PORT = 4180

FIGURES: dict[str, Any] = {}
SUCCEEDED: list[str] = []  # runs test 2 saw succeed, for test 4


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    report_figures("production", FIGURES)


def _spec(s3: S3, provider: Provider, ingress_url: str) -> dict[str, Any]:
    """Top-level spec fields over the quickstart's."""
    return {
        "imagePullSecrets": [{"name": PULL_SECRET}],
        "webserver": {"pathPrefix": PREFIX, "readOnly": {"enabled": True, "replicas": 1}},
        "ingress": {"enabled": True, "className": skipper.CLASS},
        "auth": {
            "enabled": True,
            "secretName": AUTH_SECRET,
            "issuerUrl": provider.issuer,
            "emailDomains": [oidc_provider.USER_EMAIL.split("@")[1]],
            "extraArgs": [
                # the bed's Ingress serves plain HTTP: a Secure cookie would never come back
                "--cookie-secure=false",
                # what is registered at a provider; skipper passes the Host on without its port
                f"--redirect-url={ingress_url}{PREFIX}/oauth2/callback",
            ],
        },
        "computeLogs": {
            "s3": {
                "bucket": s3.bucket,
                "prefix": S3_PREFIX,
                "endpointUrl": s3.endpoint,
                "region": "us-east-1",
                "secretName": S3_SECRET,
            }
        },
        "storage": {"postgres": {"managed": True, "deletionPolicy": "Delete"}},
        "codeServer": {
            "replicas": 1,
            "podOverrides": {
                "spec": {
                    "volumes": [EXTRA_VOLUME],
                    "containers": [{"name": "code-server", "volumeMounts": [EXTRA_MOUNT]}],
                }
            },
        },
        "runLauncher": {
            "jobTTLSeconds": 3600,
            "runs": {
                "nodeSelector": dict([RUN_LABEL]),
                "resources": RUN_RESOURCES,
                "podOverrides": {
                    "spec": {
                        "volumes": [EXTRA_VOLUME],
                        "containers": [{"name": "dagster", "volumeMounts": [EXTRA_MOUNT]}],
                    }
                },
            },
        },
    }


@pytest.fixture(scope="module")
def registry(node: RealNode) -> Iterator[Registry]:
    """The node's private registry serving PRIVATE_IMAGE (not in the node's containerd under that name)."""
    started = time.monotonic()
    reg = private_registry.start(node)
    try:
        pushed = private_registry.push(node, reg, realnode._canonical(IMAGE), PRIVATE_IMAGE.split("/", 1)[1])
        assert pushed == PRIVATE_IMAGE
        FIGURES["registry_start_and_push_s"] = round(time.monotonic() - started)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def s3(node: RealNode) -> Iterator[S3]:
    """The node's S3 server with an empty bucket for the compute logs."""
    server = s3_server.start(node)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def provider(node: RealNode) -> Iterator[Provider]:
    """The node's OpenID Connect provider, for the webserver's sign-in."""
    server = oidc_provider.start(node)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ingress_url(node: RealNode, cluster_flow: Cluster) -> Iterator[str]:
    """skipper, the node's Ingress controller; yields the URL a client outside the cluster uses."""
    c = cluster_flow
    try:
        yield skipper.install(c, node)
    finally:
        skipper.uninstall(c)


def _auth_secret(server: Provider) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": AUTH_SECRET},
        "stringData": {
            "client-id": server.client_id,
            "client-secret": server.client_secret,
            "cookie-secret": secrets.token_hex(16),
        },
    }


def _s3_secret(server: S3) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": S3_SECRET},
        "stringData": {
            "access-key-id": server.access_key_id,
            "secret-access-key": server.secret_access_key,
        },
    }


def _pull_secret(reg: Registry) -> dict[str, Any]:
    login = {"username": reg.username, "password": reg.password}
    login["auth"] = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    config = json.dumps({"auths": {reg.address: login}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": PULL_SECRET},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


@pytest.fixture(scope="module")
def prod(
    node: RealNode, registry: Registry, s3: S3, provider: Provider, ingress_url: str, cluster_flow: Cluster
) -> Iterator[Cluster]:
    """The operator and the PhloWorkflow `prod` (its image from the private registry, its UI behind the
    Ingress and oauth2-proxy) in this module's namespace, Ready."""
    c = cluster_flow
    # An earlier module's teardown deletes the CRD without waiting; a release must not meet it terminating.
    c.kubectl("wait", "--for=delete", CRD, "--timeout=120s", check=False, timeout=150)
    started = time.monotonic()
    flow.install_operator(c)
    c.k("create", "configmap", CONFIGMAP, f"--from-literal=token.txt={TOKEN}")
    c.k("apply", "-f", "-", input=json.dumps(_pull_secret(registry)))
    c.k("apply", "-f", "-", input=json.dumps(_s3_secret(s3)))
    c.k("apply", "-f", "-", input=json.dumps(_auth_secret(provider)))
    skipper.load_static_image(node, "oauth2-proxy", OAUTH2_PROXY_IMAGE, "/bin/oauth2-proxy")
    flow.apply_quickstart(c, PRIVATE_IMAGE, name=WORKFLOW, spec=_spec(s3, provider, ingress_url))
    FIGURES["ready_s"] = round(time.monotonic() - started)
    try:
        yield c
    finally:
        c.kubectl("label", "node", NODE_NAME, f"{RUN_LABEL[0]}-", check=False)


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found = [ctr for ctr in pod["spec"]["containers"] if ctr["name"] == name]
    if not found:
        raise FlowError(f"pod {pod['metadata']['name']} has no container {name}")
    return dict(found[0])


def _has_extra(pod: dict[str, Any], container: str) -> bool:
    """The pod has the ConfigMap volume and the container mounts it read-only at MOUNT."""
    volumes = [v for v in pod["spec"].get("volumes") or [] if v["name"] == "extra"]
    mounts = [m for m in _container(pod, container).get("volumeMounts") or [] if m["name"] == "extra"]
    return [v.get("configMap", {}).get("name") for v in volumes] == [CONFIGMAP] and [
        (m["mountPath"], m.get("readOnly")) for m in mounts
    ] == [(MOUNT, True)]


def _running(c: Cluster, component: str) -> dict[str, Any]:
    pods = [p for p in flow.pods_of(c, component, WORKFLOW) if p["status"].get("phase") == "Running"]
    if len(pods) != 1:
        raise FlowError(f"expected one Running {component} pod: {[p['metadata']['name'] for p in pods]}")
    return pods[0]


@pytest.mark.timeout(1800)
def test_a_configmap_volume_from_pod_overrides_is_read_in_the_code_server(prod: Cluster) -> None:
    c = prod
    pod = _running(c, "code-server")
    assert _has_extra(pod, "code-server"), pod["spec"]
    read = "import sys; print(open(sys.argv[1]).read())"
    out = c.k(
        "exec", pod["metadata"]["name"], "-c", "code-server", "--",
        "python", "-c", read, f"{MOUNT}/token.txt",
    )  # fmt: skip
    assert out.stdout.strip() == TOKEN, out.stdout


def _unschedulable(pod: dict[str, Any]) -> str | None:
    """The scheduler's message when it found no node for the pod."""
    for cond in pod["status"].get("conditions") or []:
        if (cond["type"], cond["status"], cond.get("reason")) == ("PodScheduled", "False", "Unschedulable"):
            return str(cond.get("message", ""))
    return None


@pytest.mark.timeout(1800)
def test_a_run_pod_waits_for_its_node_selector_then_runs_with_its_resources(prod: Cluster) -> None:
    c = prod
    with c.port_forward(f"svc/{WORKFLOW}-webserver", DIRECT_PORT) as direct:
        base = direct + PREFIX
        started = time.monotonic()
        run_id = flow.launch(base, "raw/orders")

        def pending() -> tuple[dict[str, Any], str] | None:
            for pod in flow.run_pods(c, run_id):
                message = _unschedulable(pod)
                if message is not None:
                    return pod, message
            return None

        pod, message = flow.wait(f"the pod of run {run_id} to be unschedulable", pending, 300, interval=1)
        FIGURES["unschedulable_after_s"] = round(time.monotonic() - started)
        assert pod["status"].get("phase") == "Pending" and not pod["spec"].get("nodeName"), pod["status"]
        assert "node affinity/selector" in message, message
        assert flow.graphql(base, flow.RUN, {"runId": run_id})["runOrError"]["status"] != "SUCCESS"

        c.kubectl("label", "node", NODE_NAME, "=".join(RUN_LABEL))
        labelled = time.monotonic()
        status = flow.wait_run(base, run_id, timeout=600)
        FIGURES["run_after_label_s"] = round(time.monotonic() - labelled)
        assert status == "SUCCESS", flow.run_messages(base, run_id)[-15:]
        SUCCEEDED.append(run_id)

    # The run's worker exits just after it reports SUCCESS.
    def exited() -> list[dict[str, Any]] | None:
        pods = flow.run_pods(c, run_id)
        return pods if all(p["status"].get("phase") in ("Succeeded", "Failed") for p in pods) else None

    pods = flow.wait(f"the pod of run {run_id} to exit", exited, 120)
    assert [p["metadata"]["uid"] for p in pods] == [pod["metadata"]["uid"]], "the run got another pod"
    ran = pods[0]
    assert ran["spec"]["nodeName"] == NODE_NAME
    assert ran["status"].get("phase") == "Succeeded", ran["status"]
    assert ran["spec"]["nodeSelector"] == dict([RUN_LABEL]), ran["spec"]["nodeSelector"]
    main = _container(ran, "dagster")
    assert main["resources"] == RUN_RESOURCES, main["resources"]
    assert ran["status"].get("qosClass") == "Burstable"
    assert main["image"] == PRIVATE_IMAGE and ran["spec"].get("imagePullSecrets") == [{"name": PULL_SECRET}]
    assert _has_extra(ran, "dagster"), ran["spec"]
    # The selector is the run pods' own: the code server, scheduled before the label existed, has none of it.
    code_server = _running(c, "code-server")
    assert RUN_LABEL[0] not in (code_server["spec"].get("nodeSelector") or {})


def _pull_failure(pod: dict[str, Any]) -> str | None:
    """The kubelet's reason and message while it cannot pull the pod's image."""
    for status in pod["status"].get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") and waiting.get("message"):
            return f"{waiting['reason']}: {waiting['message']}"
    return None


@pytest.mark.timeout(900)
def test_the_workflow_pulls_from_the_private_registry_only_with_its_pull_secret(
    node: RealNode, prod: Cluster
) -> None:
    c = prod
    # Whatever their readiness (the daemon's flaps on a loaded machine): their specs and pulls are asked.
    components = ("webserver", "daemon", "code-server", "postgres")
    pods = {name: flow.pods_of(c, name, WORKFLOW) for name in components}
    job = (c.get("pwf", WORKFLOW).get("status", {}).get("dbt") or {}).get("jobName")
    pods["dbt"] = c.get("pods", "-l", f"job-name={job}")["items"]
    for component, found in pods.items():
        assert found, component
        for pod in found:
            assert pod["spec"].get("imagePullSecrets") == [{"name": PULL_SECRET}], (component, pod["spec"])
            if component != "postgres":
                ours = {ctr["image"] for ctr in pod["spec"]["containers"] if ctr["name"] != "auth-proxy"}
                assert ours == {PRIVATE_IMAGE}, component
    pulled = [
        e["message"]
        for e in c.get("events", "--field-selector=reason=Pulled")["items"]
        if f'Successfully pulled image "{PRIVATE_IMAGE}"' in e.get("message", "")
    ]
    assert pulled, c.k("get", "events").stdout[-3000:]
    assert PRIVATE_IMAGE in node.ctr("images", "list", "--quiet").stdout.split()

    # The same image, pulled again (Always), by a pod without the Secret: the registry refuses it.
    pod = flow.restricted_pod("no-pull-secret", PRIVATE_IMAGE, ["python", "-c", "print(1)"], "Always")
    c.k("apply", "-f", "-", input=json.dumps(pod))
    failure = flow.wait(
        "the pod without the pull Secret to fail its pull",
        lambda: _pull_failure(c.get("pod", "no-pull-secret")),
        300,
    )
    FIGURES["pull_failure"] = failure
    # containerd's words for the registry's 401 with a Basic challenge, when it has no credentials to send.
    assert "authorization failed: no basic auth credentials" in failure, failure


CAPTURED = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on LogsCapturedEvent { fileKey stepKeys } } }
  }
}
"""
LOGS = """query($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }"""


@pytest.mark.timeout(1200)
def test_a_run_pods_stderr_is_read_back_through_graphql_from_the_s3_bucket(prod: Cluster, s3: S3) -> None:
    c = prod
    with c.port_forward(f"svc/{WORKFLOW}-webserver", DIRECT_PORT) as direct:
        base = direct + PREFIX
        if SUCCEEDED:
            run_id = SUCCEEDED[-1]
        else:  # run alone: test 2's run is not there, so launch one where run pods may go
            c.kubectl("label", "node", NODE_NAME, "=".join(RUN_LABEL), "--overwrite")
            run_id = flow.launch(base, "raw/orders")
            assert flow.wait_run(base, run_id) == "SUCCESS", flow.run_messages(base, run_id)[-15:]
        events = flow.graphql(base, CAPTURED, {"runId": run_id})["logsForRun"]["events"]
        captured = [e for e in events if e["__typename"] == "LogsCapturedEvent"]
        assert captured, f"run {run_id} captured no logs: {[e['__typename'] for e in events]}"
        file_key = captured[0]["fileKey"]
        logs = flow.graphql(base, LOGS, {"key": [run_id, "compute_logs", file_key]})["capturedLogs"]
    # The asset's own log line, written by the run pod's step process.
    assert "orders for" in (logs["stderr"] or ""), logs
    requests = s3.requests()
    prefix = f"/{s3.bucket}/{S3_PREFIX}/storage/{run_id}/compute_logs/"
    puts = [r for r in requests if r.startswith(f"PUT {prefix}") and r.endswith(" 200")]
    gets = [r for r in requests if r.startswith(("GET ", "HEAD ")) and prefix in r]
    assert puts, f"no upload under {prefix}: {requests[-20:]}"
    assert gets, f"the webserver never read {prefix}: {requests[-20:]}"
    assert not [r for r in requests if r.endswith(" 403")], requests
    FIGURES["compute_log_requests"] = {"puts": len(puts), "gets": len(gets)}


def _signed_in_opener() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    """A client that keeps cookies and follows redirects, as a browser does."""
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


@pytest.mark.timeout(900)
def test_the_ui_through_the_ingress_is_refused_without_sign_in_and_served_after(
    prod: Cluster, ingress_url: str, provider: Provider
) -> None:
    """skipper routes webserver.pathPrefix to the webserver Service, whose http port is oauth2-proxy's: a
    request without a session gets oauth2-proxy's sign-in page (403), GraphQL too; the OpenID Connect sign-in
    (oauth2-proxy -> the node's provider -> back to the callback under the prefix, the code redeemed by the
    proxy's pod) gives a session cookie, with which the UI and GraphQL answer through the same Ingress."""
    c = prod
    ingress = c.get("ingress", f"{WORKFLOW}-webserver")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert ingress["spec"]["ingressClassName"] == skipper.CLASS
    assert [(p["path"], p["pathType"]) for p in paths] == [(PREFIX, "Prefix")], paths
    ui = f"{ingress_url}{PREFIX}/"
    # skipper answers 404 until it has read the Ingress and its EndpointSlices
    first = flow.wait("skipper to route the Ingress", lambda: skipper.routed(ui), 180, interval=1)
    code, page = skipper.status(ui)
    assert (first, code) == (403, 403), (first, code, page[:500])
    assert f"{PREFIX}/oauth2/start" in page, page[:2000]  # oauth2-proxy's sign-in page, its paths prefixed
    query = json.dumps({"query": "{ version }"}).encode()
    headers = {"Content-Type": "application/json"}
    post = urllib.request.Request(f"{ingress_url}{PREFIX}/graphql", query, headers)
    try:
        urllib.request.urlopen(post, timeout=30)
        raise AssertionError("GraphQL answered through the Ingress without a session")
    except urllib.error.HTTPError as error:
        assert error.code in (401, 403), error.code
    FIGURES["refused_without_session"] = code

    browser, jar = _signed_in_opener()
    started = time.monotonic()
    code, page = skipper.status(f"{ingress_url}{PREFIX}/oauth2/start?rd={PREFIX}/", browser)
    FIGURES["sign_in_s"] = round(time.monotonic() - started, 1)
    assert code == 200, (code, page[:2000])
    # the Dagster UI's page, which the webserver renders with its path prefix
    assert ">Dagster</title>" in page and f'"pathPrefix": "{PREFIX}"' in page, page[:2000]
    assert [cookie.name for cookie in jar if cookie.name.startswith("_oauth2_proxy")], list(jar)
    with browser.open(post, timeout=60) as response:
        answer = json.load(response)
    assert answer["data"]["version"], answer
    # the proxy's pod found the provider, and redeemed the code the browser brought back
    requests = provider.requests()
    assert "GET /oidc/.well-known/openid-configuration 200" in requests, requests
    assert "GET /oidc/authorize 302" in requests, requests
    assert "POST /oidc/token 200" in requests, requests


@pytest.mark.timeout(600)
def test_the_read_only_webserver_shows_runs_and_refuses_to_launch_one(prod: Cluster) -> None:
    """webserver.readOnly: a second webserver (`--read-only`, no proxy, its own Service) answers queries about
    the same instance and refuses launchRun with Dagster's UnauthorizedError."""
    c = prod
    pods = [p for p in flow.pods_of(c, "webserver-ro", WORKFLOW) if p["status"].get("phase") == "Running"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in flow.pods_of(c, "webserver-ro", WORKFLOW)]
    assert [ctr["name"] for ctr in pods[0]["spec"]["containers"]] == ["webserver"]
    with c.port_forward(f"svc/{WORKFLOW}-webserver-ro", 3000) as read_only:
        base = read_only + PREFIX
        if SUCCEEDED:  # test 2's run, launched through the main webserver
            run = flow.graphql(base, flow.RUN, {"runId": SUCCEEDED[-1]})["runOrError"]
            assert run["status"] == "SUCCESS", run
        with pytest.raises(FlowError, match="UnauthorizedError"):
            flow.launch(base, "raw/orders")
