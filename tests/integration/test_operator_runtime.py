"""Proof that what the operator renders runs: the live Deployments' containers (command, args, env, mounts)
run as local processes, service host names mapped to 127.0.0.1 ports and PostgreSQL to the test bed's."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_operator import NAME, ROOT, Kubectl, Operator, free_port, wait_for
from tests.testbed.cluster import Testbed

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
QUICKSTART = ROOT / "examples/quickstart"


class LocalPod:
    """Runs the containers of a live pod template as local processes, translating what only a cluster
    provides: volumes become directories, Secret/ConfigMap references are read from the API, mount paths,
    service hosts and ports are rewritten, and servers bind 127.0.0.1."""

    def __init__(
        self,
        kc: Kubectl,
        pod: dict[str, Any],
        root: Path,
        ports: dict[int, int],
        rewrite: Callable[[str, str], str],
        log_dir: Path,
    ) -> None:
        self.kc, self.pod, self.root, self.ports, self.log_dir = kc, pod, root, ports, log_dir
        self.volumes: dict[str, Path] = {}
        for vol in pod.get("volumes", []):
            path = root / vol["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol:
                data = kc.must("cm", vol["configMap"]["name"]).get("data", {})
                for key, text in data.items():
                    (path / key).write_text(rewrite(key, text))
            self.volumes[vol["name"]] = path

    def _mounts(self, ctr: dict[str, Any]) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        for m in ctr.get("volumeMounts", []):
            if m["mountPath"] == "/tmp":
                continue  # a local process has a writable /tmp of its own
            local = self.volumes[m["name"]] / m.get("subPath", "")
            out.append((m["mountPath"], local))
        out.sort(key=lambda pair: len(pair[0]), reverse=True)
        # A file mounted inside another mount (dagster.yaml in DAGSTER_HOME) is copied into place.
        for path, local in out:
            for outer, outer_local in out:
                if path != outer and path.startswith(outer + "/") and local.is_file():
                    target = outer_local / path[len(outer) + 1 :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(local, target)
                    break
        return out

    def _secret(self, name: str, key: str) -> str:
        data = self.kc.must("secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    def command(self, ctr: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        mounts = self._mounts(ctr)

        def path(value: str) -> str:
            for mount, local in mounts:
                if value == mount or value.startswith(mount + "/"):
                    return str(local) + value[len(mount) :]
            return value

        env = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(self.root), "LANG": "C.UTF-8"}
        for var in ctr.get("env", []):
            if "value" in var:
                env[var["name"]] = path(var["value"])
            elif "secretKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self._secret(ref["name"], ref["key"])
        argv = [path(a) for a in [*ctr.get("command", []), *ctr.get("args", [])]]
        for i, arg in enumerate(argv):
            if arg == "0.0.0.0":
                argv[i] = "127.0.0.1"
            if i and argv[i - 1] in ("-p", "--port") and int(arg) in self.ports:
                argv[i] = str(self.ports[int(arg)])
        if not Path(argv[0]).is_absolute() and (BIN / argv[0]).exists():
            argv[0] = str(BIN / argv[0])
        return argv, env

    def run_init(self) -> None:
        for ctr in self.pod.get("initContainers", []):
            argv, env = self.command(ctr)
            out = subprocess.run(argv, env=env, cwd=self.root, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, f"init container {ctr['name']} failed: {out.stdout}\n{out.stderr}"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv, env = self.command(self.pod["containers"][0])
        log = (self.log_dir / f"{name}.log").open("wb")
        return subprocess.Popen(argv, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        payload = json.load(resp)
    assert not payload.get("errors"), payload["errors"]
    return dict(payload["data"])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


REPOS = """query { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name
  location { name } assetNodes { assetKey { path } isMaterializable isPartitioned partitionKeys
  dependencyKeys { path } } } } } }"""
DAEMONS = "query { instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.usefixtures("crds")
def test_rendered_deployments_run_as_local_processes(
    testbed: Testbed, namespace: str, postgres: Any, tmp_path: Path, processes: list
) -> None:
    kc = Kubectl(testbed, namespace)
    db = f"pwf_{namespace.replace('-', '_')}"[:60]
    postgres.create_database(db)
    params = postgres.params(db)
    kc(
        "create", "secret", "generic", "dagster-pg",
        f"--from-literal=host={params['host']}", f"--from-literal=port={params['port']}",
        f"--from-literal=user={params['user']}", f"--from-literal=password={params['password']}",
        f"--from-literal=database={params['database']}",
    )  # fmt: skip
    (tmp_path / "data").mkdir()  # PHLO_DATA_DIR: the quickstart's DuckDB directory (in a cluster: /tmp)
    operator = Operator(testbed, [namespace], tmp_path / "operator.log").start()
    try:
        doc = yaml.safe_load((QUICKSTART / "workflow.yaml").read_text())
        doc["spec"].update(
            {
                # Paths "inside the image" are this checkout's quickstart: the image is this repository.
                "workflows": {"path": str(QUICKSTART / "workflows")},
                "dbt": {
                    "enabled": True,
                    "projectDir": str(QUICKSTART / "dbt"),
                    "profilesDir": str(QUICKSTART / "dbt"),
                },
                "storage": {"postgres": {"secretName": "dagster-pg"}},
                "env": [{"name": "PHLO_DATA_DIR", "value": str(tmp_path / "data")}],
            }
        )
        kc("apply", "-f", "-", input=json.dumps(doc))
        kc.wait_condition("Ready", timeout=180)
        deployments = {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in kc.items("deployments")
        }
    finally:
        operator.stop()

    grpc_port, web_port = free_port(), free_port()
    code_port = deployments["code-server"]["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ]
    web_container_port = deployments["webserver"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    ports = {code_port: grpc_port, web_container_port["containerPort"]: web_port}
    sa = deployments["daemon"]["spec"]["template"]["spec"]["serviceAccountName"]
    # In-cluster credentials become a kubeconfig for the same ServiceAccount: the run Role is what is tested.
    sa_kubeconfig = testbed.kubeconfig_for_token(testbed.token(namespace, sa))

    def rewrite(key: str, text: str) -> str:
        if key == "workspace.yaml":
            ws = yaml.safe_load(text)
            for entry in ws["load_from"]:
                assert entry["grpc_server"]["host"] == f"{NAME}-code-server"
                entry["grpc_server"].update(host="127.0.0.1", port=ports[entry["grpc_server"]["port"]])
            return yaml.safe_dump(ws)
        if key == "dagster.yaml":
            inst = yaml.safe_load(text)
            inst["run_launcher"]["config"].update(
                load_incluster_config=False, kubeconfig_file=str(sa_kubeconfig)
            )
            return yaml.safe_dump(inst)
        return text

    logs = tmp_path / "logs"
    logs.mkdir()

    def local(component: str) -> LocalPod:
        pod = deployments[component]["spec"]["template"]["spec"]
        return LocalPod(kc, pod, tmp_path / component, ports, rewrite, logs)

    def log_tail(name: str) -> str:
        return (logs / f"{name}.log").read_text(errors="replace")[-3000:]

    code = local("code-server")
    code.run_init()  # `phlo dbt compile` into the target emptyDir
    assert (tmp_path / "code-server/dbt-target/manifest.json").exists()
    processes.append(code.start("code-server"))
    web = local("webserver")
    processes.append(web.start("webserver"))
    base = f"http://127.0.0.1:{web_port}"
    wait_for(
        f"webserver /server_info\n{log_tail('webserver')}",
        lambda: http_ok(f"{base}/server_info"),
        timeout=180,
    )

    def loaded() -> Any:
        repos = graphql(base, REPOS)["repositoriesOrError"]
        return repos if repos["__typename"] == "RepositoryConnection" and repos["nodes"] else None

    repos = wait_for(f"code location loaded\n{log_tail('code-server')}", loaded, timeout=180)
    assert {n["location"]["name"] for n in repos["nodes"]} == {"phlo"}
    assets = [a for n in repos["nodes"] for a in n["assetNodes"]]
    assert any(a["assetKey"]["path"] for a in assets)
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        assert "dagster_runs" in resp.read().decode()

    processes.append(local("daemon").start("daemon"))

    def heartbeats() -> bool:
        statuses = graphql(base, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return any(s["healthy"] for s in statuses if s["daemonType"] == "QUEUED_RUN_COORDINATOR")

    wait_for(f"daemon heartbeat\n{log_tail('daemon')}", heartbeats, timeout=120, every=2)

    roots = [(a["isPartitioned"], n["name"], a) for n in repos["nodes"] for a in n["assetNodes"]
             if a["isMaterializable"] and not a["dependencyKeys"]]  # fmt: skip
    assert roots, assets
    partitioned, repo_name, node = sorted(roots, key=lambda r: r[0])[0]
    tags = [{"key": "dagster/partition", "value": node["partitionKeys"][-1]}] if partitioned else []
    selector = {"repositoryLocationName": "phlo", "repositoryName": repo_name, "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": node["assetKey"]["path"]}]}  # fmt: skip
    params = {"selector": selector, "runConfigData": {}, "executionMetadata": {"tags": tags}}
    launched = graphql(base, LAUNCH, {"p": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    # The daemon dequeues the run; K8sRunLauncher (with the rendered RBAC) creates the run Job on the bed.
    jobs = wait_for(
        f"run Job for {run_id}\n{log_tail('daemon')}",
        lambda: kc.items("jobs", f"dagster/run-id={run_id}"),
        timeout=120,
        every=2,
    )
    job = jobs[0]
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    # Run pods are labelled as this workflow's runs (the code server's NetworkPolicy does not admit them: the
    # run worker below loads the code from the image, it never calls the code server).
    assert pod_labels["app.kubernetes.io/component"] == "run"
    assert pod_labels["app.kubernetes.io/instance"] == NAME
    run_pod = LocalPod(kc, job["spec"]["template"]["spec"], tmp_path / "run", ports, rewrite, logs)
    run_pod.run_init()
    worker = run_pod.start("run")
    processes.append(worker)
    worker.wait(timeout=300)
    status = wait_for(
        "run finished",
        lambda: (
            (s := graphql(base, RUN, {"id": run_id})["runOrError"].get("status")) in ("SUCCESS", "FAILURE")
            and s
        ),
        timeout=120,
        every=2,
    )
    assert status == "SUCCESS", log_tail("run")
