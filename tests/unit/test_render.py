"""Every renderer: hardened pods, names for any CR name, the gates and switches in the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator.model import parse_spec
from phlo_operator.render import (
    Facts,
    Workflow,
    components,
    config,
    dbt,
    pods,
    policy,
    postgres,
    render_all,
    shared,
)
from phlo_operator.render.workflow import CHECKSUM_ANNOTATION

pytestmark = pytest.mark.unit
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def wf(name: str = "demo", **spec: Any) -> Workflow:
    return Workflow(name=name, namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def instance_yaml(w: Workflow) -> Any:
    """dagster.yaml as the instance ConfigMap carries it."""
    return yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])


def pod_specs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def everything(w: Workflow, facts: Facts | None = None) -> list[dict[str, Any]]:
    d = render_all(w, facts)
    return d.all_objects()


def test_every_pod_is_hardened() -> None:
    objs = everything(wf(dbt={"enabled": True}))
    specs = pod_specs(objs)
    assert len(specs) == 5  # webserver, daemon, postgres, code server, dbt job
    for spec in specs:
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        for ctr in spec["containers"] + spec.get("initContainers", []):
            csc = ctr["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["capabilities"] == {"drop": ["ALL"]}
            assert any(m["mountPath"] == "/tmp" for m in ctr["volumeMounts"]), ctr["name"]


def test_no_secret_value_is_rendered_outside_the_generated_secret() -> None:
    doc = instance_yaml(wf())
    assert doc["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    env = components.webserver_deployment(wf(), shared(wf()))["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    pg_password = next(e for e in env if e["name"] == "DAGSTER_PG_PASSWORD")
    assert pg_password["valueFrom"]["secretKeyRef"] == {"name": "demo-postgres", "key": "password"}


@pytest.mark.parametrize("name", ["demo", "x" * 253, "1-starts-with-digit", "a.b.c", "a" * 63])
def test_child_names_are_valid_for_any_cr_name(name: str) -> None:
    w = wf(name, dbt={"enabled": True}, webserver={"replicas": 2}, codeServer={"replicas": 2})
    for obj in everything(w):
        meta = obj["metadata"]
        assert DNS1035.match(meta["name"]) and len(meta["name"]) <= 47, meta["name"]
        for value in meta["labels"].values():
            assert len(value) <= 63
        assert meta["ownerReferences"][0]["name"] == name or obj["kind"] == "Secret"


def test_long_names_stay_unique() -> None:
    a, b = wf("x" * 100 + "a"), wf("x" * 100 + "b")
    assert a.child("webserver") != b.child("webserver")


def test_dagster_yaml_is_valid_for_dagster_and_has_run_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    doc = instance_yaml(wf())
    launcher = doc["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher" and doc["run_coordinator"]["class"] == "QueuedRunCoordinator"
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert launcher["config"]["run_k8s_config"]["job_spec_config"]["ttlSecondsAfterFinished"] == 3600
    for var, value in (("HOST", "h"), ("PORT", "5432"), ("USER", "u"), ("PASSWORD", "p"), ("DB", "d")):
        monkeypatch.setenv(f"DAGSTER_PG_{var}", value)
    storage = process_config(DagsterPostgresStorage.config_type(), doc["storage"]["postgres"])
    assert storage.success, storage.errors


def test_workspace_points_at_the_code_server_service() -> None:
    w = wf(codeServer={"port": 4100})
    doc = yaml.safe_load(config.workspace_configmap(w, shared(w))["data"]["workspace.yaml"])
    grpc = doc["load_from"][0]["grpc_server"]
    assert grpc == {"host": "demo-code-server", "port": 4100, "location_name": "phlo"}
    svc = components.code_server_service(w)
    assert svc["metadata"]["name"] == "demo-code-server" and svc["spec"]["ports"][0]["port"] == 4100


def test_commands_follow_the_runtime_contract() -> None:
    w = wf()
    ws = components.webserver_deployment(w, shared(w))["spec"]["template"]["spec"]["containers"][0]
    assert ws["command"][:2] == ["phlo", "webserver"] and "3000" in ws["command"]
    assert ws["readinessProbe"]["httpGet"]["path"] == "/server_info"
    cs = components.code_server_deployment(w, shared(w))["spec"]["template"]["spec"]["containers"][0]
    assert cs["command"][:8] == [
        "dagster",
        "api",
        "grpc",
        "-m",
        "phlo_dagster.definitions",
        "-h",
        "0.0.0.0",
        "-p",
    ]
    assert cs["readinessProbe"]["grpc"] == {"port": 4000, "service": "DagsterApi"}
    # both sit behind a Service: they keep answering while kube-proxy drops a terminating pod
    drain = {"preStop": {"sleep": {"seconds": pods.DRAIN_SECONDS}}}
    assert ws["lifecycle"] == cs["lifecycle"] == drain and pods.DRAIN_SECONDS > 0
    d = components.daemon_deployment(w, shared(w))
    daemon = d["spec"]["template"]["spec"]["containers"][0]
    assert daemon["command"][:2] == ["phlo", "daemon"]
    # probed over HTTP by the daemon's own process, not by an exec that starts Python each time
    health = {"path": "/healthz", "port": "health"}
    assert daemon["readinessProbe"]["httpGet"] == daemon["livenessProbe"]["httpGet"] == health
    assert daemon["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}


def test_dbt_job_and_init_container_share_inputs_and_hash() -> None:
    w = wf(dbt={"enabled": True, "projectDir": "/app/dbt", "podAnnotations": {"kwok.phlo.dev/fail": "true"}})
    job = dbt.job(w, shared(w))
    assert job is not None
    h = dbt.spec_hash(w)
    assert h is not None and dbt.hash_of(job) == h and job["metadata"]["name"] == f"demo-dbt-{h}"
    assert job["spec"]["template"]["metadata"]["annotations"]["kwok.phlo.dev/fail"] == "true"
    init = components.code_server_deployment(w, shared(w))["spec"]["template"]["spec"]["initContainers"][0]
    jc = job["spec"]["template"]["spec"]["containers"][0]
    assert init["command"] == jc["command"] == ["phlo", "dbt", "compile"]
    assert init["env"] == jc["env"] and init["image"] == jc["image"]
    assert {"name": "PHLO_DBT_TARGET_PATH", "value": "/opt/phlo/dbt-target"} in init["env"]


def test_dbt_hash_tracks_what_affects_the_compile_only() -> None:
    base = dbt.spec_hash(wf(dbt={"enabled": True}))
    assert base == dbt.spec_hash(wf(dbt={"enabled": True}, webserver={"replicas": 3}))
    assert base != dbt.spec_hash(wf(dbt={"enabled": True, "target": "prod"}))
    assert base != dbt.spec_hash(wf(dbt={"enabled": True}, image="img:2"))
    assert base != dbt.spec_hash(wf(dbt={"enabled": True}, env=[{"name": "X", "value": "1"}]))
    assert dbt.spec_hash(wf()) is None and dbt.job(wf(), shared(wf())) is None


def test_checksum_annotation_rolls_pods_on_config_change() -> None:
    def checksum(w: Workflow) -> str:
        return components.webserver_deployment(w, shared(w))["spec"]["template"]["metadata"]["annotations"][
            CHECKSUM_ANNOTATION
        ]

    assert checksum(wf()) == checksum(wf())
    assert checksum(wf()) != checksum(wf(codeServer={"port": 4001}))
    assert checksum(wf()) != checksum(wf(runLauncher={"jobTTLSeconds": 5}))


def test_suspend_scales_dagster_to_zero_but_keeps_postgres() -> None:
    d = render_all(wf(suspend=True))
    deployments = [o for o in d.objects if o["kind"] == "Deployment"] + [d.code_server]
    assert {o["spec"]["replicas"] for o in deployments} == {0}
    sts = next(o for o in d.objects if o["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 1


def test_replicas_are_left_to_an_hpa() -> None:
    w = wf(webserver={"replicas": 3})
    dep = components.webserver_deployment(w, shared(w), frozenset({"demo-webserver"}))
    assert "replicas" not in dep["spec"]
    assert components.webserver_deployment(w, shared(w))["spec"]["replicas"] == 3


def test_pdbs_only_for_replicated_components() -> None:
    assert policy.pod_disruption_budgets(wf()) == []
    pdbs = policy.pod_disruption_budgets(wf(codeServer={"replicas": 2}))
    assert [p["metadata"]["name"] for p in pdbs] == ["demo-code-server"]
    assert ("policy/v1", "PodDisruptionBudget", "team", "demo-code-server") in render_all(wf()).absent


def test_network_policy_admits_only_webserver_and_daemon() -> None:
    np = policy.code_server_network_policy(wf())
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "code-server"
    assert np["spec"]["policyTypes"] == ["Ingress"]
    [rule] = np["spec"]["ingress"]
    [peer] = rule["from"]  # no namespaceSelector: pods of this namespace only
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["webserver", "daemon"]}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 4000}]
    other = policy.code_server_network_policy(wf(runLauncher={"namespace": "runs"}))
    assert other["spec"]["ingress"] == np["spec"]["ingress"]


def test_service_monitor_only_when_enabled_and_api_exists() -> None:
    on = wf(metrics={"serviceMonitor": {"enabled": True}})
    kinds = lambda d: [o["kind"] for o in d.objects]  # noqa: E731
    assert "ServiceMonitor" not in kinds(render_all(on, Facts(service_monitor_api=False)))
    assert "ServiceMonitor" in kinds(render_all(on, Facts(service_monitor_api=True)))
    assert "ServiceMonitor" not in kinds(render_all(wf(), Facts(service_monitor_api=True)))


def test_exec_probes_give_their_process_time_and_the_daemon_has_none() -> None:
    """An exec probe starts a process in the container; Kubernetes' 1 s default timeout failed it on a loaded
    node (the managed PostgreSQL's pg_isready: out of its Service, daemons lost the database). Mutation
    (2026-12-06): without the PostgreSQL probe's timeoutSeconds this failed."""
    w = wf(dbt={"enabled": True, "projectDir": "/app/dbt"})
    probes = [
        (c["name"], kind, c[kind])
        for spec in pod_specs(everything(w))
        for c in [*spec.get("initContainers", []), *spec["containers"]]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
        if kind in c
    ]
    assert any(name == "postgres" for name, _, _ in probes), probes
    for name, kind, probe in probes:
        if "exec" in probe:
            assert probe.get("timeoutSeconds", 1) >= 5, (name, kind, probe)
            assert probe.get("periodSeconds", 10) >= probe["timeoutSeconds"], (name, kind, probe)
    assert not [p for name, _, p in probes if name == "daemon" and "exec" in p]


def test_managed_postgres_secret_and_pvc_follow_deletion_policy() -> None:
    retain, delete = wf(), wf(storage={"postgres": {"deletionPolicy": "Delete"}})
    assert "ownerReferences" not in postgres.secret(retain, "pw")["metadata"]
    assert postgres.secret(delete, "pw")["metadata"]["ownerReferences"][0]["kind"] == "PhloWorkflow"
    assert (
        postgres.statefulset(retain)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"]
        == "Retain"
    )
    assert (
        postgres.statefulset(delete)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"]
        == "Delete"
    )
    assert set(postgres.secret(retain, "pw")["stringData"]) == {
        "host",
        "port",
        "user",
        "password",
        "database",
    }


def test_external_secret_replaces_managed_postgres() -> None:
    d = render_all(wf(storage={"postgres": {"secretName": "my-pg"}}))
    assert "StatefulSet" not in [o["kind"] for o in d.objects]
    assert ("apps/v1", "StatefulSet", "team", "demo-postgres") in d.absent
    env = d.code_server["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"].startswith("DAGSTER_PG_")} == {
        "my-pg"
    }


def test_user_env_scheduling_and_service_account() -> None:
    w = wf(
        env=[{"name": "A", "value": "1"}],
        envFrom=[{"configMapRef": {"name": "cm"}}],
        nodeSelector={"pool": "data"},
        tolerations=[{"key": "k", "operator": "Exists"}],
        serviceAccountName="team-sa",
    )
    d = render_all(w)
    spec = d.code_server["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "data"} and spec["tolerations"][0]["key"] == "k"
    assert spec["serviceAccountName"] == "team-sa"
    ctr = spec["containers"][0]
    assert {"name": "A", "value": "1"} in ctr["env"] and ctr["envFrom"] == [{"configMapRef": {"name": "cm"}}]
    accounts = [o["metadata"]["name"] for o in d.objects if o["kind"] == "ServiceAccount"]
    assert accounts == ["demo-postgres"]  # PostgreSQL's own; no generated Dagster ServiceAccount
    rb = next(o for o in d.objects if o["kind"] == "RoleBinding")
    assert rb["subjects"][0]["name"] == "team-sa"


def test_rendering_is_pure() -> None:
    assert render_all(wf(dbt={"enabled": True})) == render_all(wf(dbt={"enabled": True}))


def run_pod(w: Workflow, tmp_path: Path, location: int = 0) -> Any:
    """The pod spec of a run Job as Dagster's own K8sRunLauncher builds it from what the operator renders:
    the launcher from dagster.yaml, the run's image and container context from the code server's env (as
    `dagster api grpc` reads DAGSTER_CURRENT_IMAGE and DAGSTER_CONTAINER_CONTEXT into the code location), of
    the location at that index."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_k8s.job import construct_dagster_k8s_job

    kubeconfig = tmp_path / "kubeconfig"  # the launcher loads credentials when it is built; nothing is called
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    context = {"name": "c", "context": {"cluster": "c", "user": "u"}}
    kubeconfig.write_text(
        yaml.safe_dump(
            {"clusters": [cluster], "users": [{"name": "u", "user": {}}], "contexts": [context]}
            | {"current-context": "c"}
        )
    )
    launcher_config = instance_yaml(w)["run_launcher"]["config"]
    launcher_config.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    launcher: Any = ConfigurableClassData(
        "dagster_k8s", "K8sRunLauncher", yaml.safe_dump(launcher_config)
    ).rehydrate()
    code_server = render_all(w).locations[location].code_server["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in code_server["env"]}
    location = RepositoryPythonOrigin(
        executable_path="python",
        code_pointer=ModuleCodePointer("phlo_dagster.definitions", "defs", working_directory=None),
        container_image=env["DAGSTER_CURRENT_IMAGE"],
        container_context=json.loads(env.get("DAGSTER_CONTAINER_CONTEXT") or "{}"),
    )
    run = DagsterRun(job_name="job", run_id="r1", job_code_origin=JobPythonOrigin("job", location))
    context_for_run = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context_for_run.get_k8s_job_config(
            job_image=location.container_image, run_launcher=launcher
        ),
        args=["dagster", "api", "execute_run"],
        job_name="run-r1",
        pod_name="run-r1",
        component="run_worker",
        user_defined_k8s_config=context_for_run.run_k8s_config,
        labels={},
        env_vars=[],
    )
    return job.spec.template.spec


def test_run_pods_get_the_code_image_and_the_dbt_init_container_through_dagsters_launcher(
    tmp_path: Path,
) -> None:
    w = wf(dbt={"enabled": True}, codeServer={"image": "team/code:7"})
    pod = run_pod(w, tmp_path)
    assert pod.containers[0].image == "team/code:7"
    [init] = pod.init_containers
    assert init.command == ["phlo", "dbt", "compile"] and init.image == "team/code:7"
    assert [v.name for v in pod.volumes] == ["tmp", "dagster-home", "dbt-target"]
    assert [m.name for m in pod.containers[0].volume_mounts] == ["tmp", "dagster-home", "dbt-target"]
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["PHLO_DBT_COMPILE_ON_LOAD"] == "false"
    assert pod.security_context.run_as_non_root is True
    plain = run_pod(wf(), tmp_path)
    assert plain.containers[0].image == "img:1" and not plain.init_containers
    assert [v.name for v in plain.volumes] == ["tmp", "dagster-home"]
    assert instance_yaml(w)["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_dagster_yaml_holds_nothing_of_the_code_image() -> None:
    w = wf(dbt={"enabled": True}, codeServer={"image": "team/code:7"})
    text = config.instance_configmap(w, shared(w))["data"]["dagster.yaml"]
    assert "team/code" not in text and "job_image" not in text


def test_a_code_image_change_leaves_the_webserver_and_daemon_pod_templates_byte_identical() -> None:
    def templates(w: Workflow) -> dict[str, str]:
        d = render_all(w)
        out = {
            o["metadata"]["name"]: json.dumps(o["spec"]["template"], sort_keys=True)
            for o in d.objects
            if o["kind"] == "Deployment"
        }
        out["instance"] = json.dumps(config.instance_configmap(w, shared(w)), sort_keys=True)
        out["code-server"] = json.dumps(d.code_server["spec"]["template"], sort_keys=True)
        out["dbt-job"] = json.dumps(d.dbt_job, sort_keys=True)
        return out

    before = templates(wf(dbt={"enabled": True}, codeServer={"image": "team/code:1"}))
    after = templates(wf(dbt={"enabled": True}, codeServer={"image": "team/code:2"}))
    for unchanged in ("demo-webserver", "demo-daemon", "instance"):
        assert before[unchanged] == after[unchanged], unchanged
    assert before["code-server"] != after["code-server"] and before["dbt-job"] != after["dbt-job"]
    # Without codeServer.image, spec.image is the code image and the webserver's and daemon's own image too.
    moved = templates(wf(dbt={"enabled": True}, image="img:2"))
    assert moved["demo-webserver"] != templates(wf(dbt={"enabled": True}))["demo-webserver"]
    assert moved["instance"] == templates(wf(dbt={"enabled": True}))["instance"]


def test_runs_in_another_namespace_read_a_copy_of_the_storage_secret() -> None:
    def run_env(w: Workflow) -> set[str]:
        doc = instance_yaml(w)
        env = doc["run_launcher"]["config"]["run_k8s_config"]["container_config"]["env"]
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"].startswith("DAGSTER_PG_")}

    assert run_env(wf()) == {"demo-postgres"}
    assert run_env(wf(storage={"postgres": {"secretName": "my-pg"}})) == {"my-pg"}
    other = wf(runLauncher={"namespace": "runs"}, storage={"postgres": {"secretName": "my-pg"}})
    assert run_env(other) == {"demo-postgres-runs"}
    # The Dagster pods themselves keep reading the original in their own namespace.
    env = render_all(other).code_server["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"].startswith("DAGSTER_PG_")} == {
        "my-pg"
    }
    data = {k: "eA==" for k in ("host", "port", "user", "password", "database", "extra")}
    copy = postgres.run_secret_copy(other, data)
    assert copy["metadata"]["namespace"] == "runs" and copy["metadata"]["name"] == "demo-postgres-runs"
    assert "ownerReferences" not in copy["metadata"]  # cannot cross namespaces; deleted by the operator
    assert set(copy["data"]) == {"host", "port", "user", "password", "database"}


def test_webserver_service_has_ports_http_and_metrics() -> None:
    ports = {p["name"]: p for p in components.webserver_service(wf())["spec"]["ports"]}
    assert ports["http"]["port"] == 3000 and ports["metrics"]["port"] == 9090
    assert ports["http"]["targetPort"] == ports["metrics"]["targetPort"] == "http"  # /metrics is on http
    off = components.webserver_service(wf(metrics={"enabled": False}))
    assert [p["name"] for p in off["spec"]["ports"]] == ["http"]
    on = wf(metrics={"serviceMonitor": {"enabled": True}})
    monitor = next(
        o for o in render_all(on, Facts(service_monitor_api=True)).objects if o["kind"] == "ServiceMonitor"
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_dagster_yaml_passes_instance_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    for var, value in (("HOST", "h"), ("PORT", "5432"), ("USER", "u"), ("PASSWORD", "p"), ("DB", "d")):
        monkeypatch.setenv(f"DAGSTER_PG_{var}", value)

    doc = instance_yaml(wf())
    result = process_config(dagster_instance_config_schema(), doc)
    assert result.success, result.errors
    # max_runtime_seconds from RunSpec is enforced by the daemon's run monitor only when it is on.
    assert doc["run_monitoring"]["enabled"] is True


# -- instance settings: the run queue, retries, tick retention, pools, free-form instance config
def _coordinator(doc: dict[str, Any]) -> Any:
    """The run coordinator Dagster builds from the rendered dagster.yaml."""
    from dagster._serdes.config_class import ConfigurableClassData

    section = doc["run_coordinator"]
    return ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section.get("config") or {})
    ).rehydrate()


def test_the_run_queue_settings_reach_dagsters_queued_run_coordinator() -> None:
    default = _coordinator(instance_yaml(wf()))
    assert default.get_run_queue_config().max_concurrent_runs == 10  # Dagster's default, nothing rendered
    limits = [
        {"key": "team", "value": "ml", "limit": 1},
        {"key": "dagster/backfill", "limit": 3},
        {"key": "tenant", "applyLimitPerUniqueValue": True, "limit": 2},
    ]
    doc = instance_yaml(wf(runCoordinator={"maxConcurrentRuns": 2, "tagConcurrencyLimits": limits}))
    queue = _coordinator(doc).get_run_queue_config()
    assert queue.max_concurrent_runs == 2
    assert queue.tag_concurrency_limits == [
        {"key": "team", "value": "ml", "limit": 1},
        {"key": "dagster/backfill", "limit": 3},
        {"key": "tenant", "value": {"applyLimitPerUniqueValue": True}, "limit": 2},
    ]
    assert "concurrency" not in doc


def test_with_pools_the_run_limits_move_to_concurrency_runs() -> None:
    """Dagster refuses run-queue limits in the coordinator's config once concurrency is configured."""
    from dagster._core.instance.config import ConcurrencyConfig

    doc = instance_yaml(
        wf(
            runCoordinator={"maxConcurrentRuns": 4},
            concurrency={"pools": {"defaultLimit": 3, "granularity": "op"}},
        )
    )
    assert "config" not in doc["run_coordinator"]
    settings = ConcurrencyConfig.from_concurrency_settings(
        doc["concurrency"], _coordinator(doc).get_run_queue_config()
    )
    assert settings.run_queue_config is not None and settings.run_queue_config.max_concurrent_runs == 4
    assert settings.pool_config.default_pool_limit == 3
    assert (
        settings.pool_config.pool_granularity is not None
        and settings.pool_config.pool_granularity.value == "op"
    )


def test_run_retries_and_tick_retention_render_as_dagster_reads_them() -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.instance.config import get_default_tick_retention_settings, get_tick_retention_settings
    from dagster._core.scheduler.instigation import TickStatus

    assert "run_retries" not in instance_yaml(wf()) and "retention" not in instance_yaml(wf())
    doc = instance_yaml(
        wf(
            runRetries={"maxRetries": 2, "retryOnAssetOrOpFailure": False},
            retention={"sensor": {"skipped": 1, "failure": 30}, "schedule": {"success": -1}},
        )
    )
    assert doc["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    sensor = get_tick_retention_settings(
        doc["retention"]["sensor"], get_default_tick_retention_settings(InstigatorType.SENSOR)
    )
    assert sensor[TickStatus.SKIPPED] == 1 and sensor[TickStatus.FAILURE] == 30
    assert sensor[TickStatus.SUCCESS] == -1  # unset: Dagster's default
    assert doc["retention"]["schedule"] == {"purge_after_days": {"success": -1}}
    off = instance_yaml(wf(runRetries={"maxRetries": 0}))
    assert off["run_retries"]["enabled"] is False


def test_instance_config_is_merged_last_as_a_json_merge_patch() -> None:
    doc = instance_yaml(
        wf(
            runCoordinator={"maxConcurrentRuns": 2},
            instanceConfig={
                "run_coordinator": {"config": {"max_concurrent_runs": 7, "dequeue_interval_seconds": 2}},
                "run_monitoring": {"poll_interval_seconds": 10},
                "telemetry": None,
                "sensors": {"use_threads": True, "num_workers": 4},
            },
        )
    )
    assert doc["run_coordinator"]["config"] == {"max_concurrent_runs": 7, "dequeue_interval_seconds": 2}
    assert doc["run_coordinator"]["class"] == "QueuedRunCoordinator"  # objects merge key by key
    assert doc["run_monitoring"] == {
        "enabled": True,
        "start_timeout_seconds": 300,
        "poll_interval_seconds": 10,
    }
    assert "telemetry" not in doc  # null removes
    assert doc["sensors"] == {"use_threads": True, "num_workers": 4}
    assert _coordinator(doc).get_run_queue_config().max_concurrent_runs == 7


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"instanceConfig": {"run_coordinator": {"config": {"max_concurent_runs": 3}}}},
            "spec.instanceConfig: Dagster 1.13.27 would refuse the resulting dagster.yaml: "
            "root:run_coordinator:config: unexpected key 'max_concurent_runs'",
        ),
        (
            {"instanceConfig": {"telemetry": {"enabled": "no"}}},
            'root:telemetry:enabled: "no" is not a boolean',
        ),
        ({"instanceConfig": {"schedulez": {}}}, "root: unexpected key 'schedulez'"),
        (
            {
                "concurrency": {"pools": {"defaultLimit": 1}},
                "instanceConfig": {"run_queue": {"max_concurrent_runs": 1}},
            },
            "root:run_queue:max_concurrent_runs: excluded by concurrency.runs/pools",
        ),
    ],
)
def test_an_instance_config_dagster_refuses_is_an_invalid_spec_naming_the_key(
    spec: dict[str, Any], expected: str
) -> None:
    from phlo_operator.model import InvalidSpec

    with pytest.raises(InvalidSpec) as err:
        render_all(wf(**spec))
    assert expected in str(err.value)
