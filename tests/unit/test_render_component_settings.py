"""Per-component pod settings (webserver, daemon, codeServer, dbt, runLauncher.runs) on top of the spec-level
ones, and podOverrides merged into each component's pods (run pods: into the K8sRunLauncher's config)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from phlo_operator import model as m
from phlo_operator.model import InvalidSpec, parse_spec
from phlo_operator.render import Workflow, components, config, dbt, render_all, shared
from phlo_operator.render.workflow import CHECKSUM_ANNOTATION

pytestmark = pytest.mark.unit

# Field of the spec -> how to find that component's pod template in the rendered objects.
FIELDS = {"webserver": "Deployment/demo-webserver", "daemon": "Deployment/demo-daemon"}
FIELDS |= {"codeServer": "Deployment/demo-code-server", "dbt": "Job"}


def wf(**spec: Any) -> Workflow:
    return Workflow(name="demo", namespace="team", uid="uid-1", spec=parse_spec({"image": "img:1", **spec}))


def workloads(w: Workflow) -> dict[str, dict[str, Any]]:
    d = render_all(w)
    out = {}
    for o in d.all_objects():
        if o["kind"] in ("Deployment", "Job"):
            out["Job" if o["kind"] == "Job" else f"Deployment/{o['metadata']['name']}"] = o
    return out


def run_config(w: Workflow) -> dict[str, Any]:
    doc = yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])
    return dict(doc["run_launcher"]["config"]["run_k8s_config"])


def main_container(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]


def every_component(settings: dict[str, Any]) -> dict[str, Any]:
    return {field: dict(settings) for field in FIELDS} | {"runLauncher": {"runs": dict(settings)}}


GLOBAL = {
    "env": [{"name": "A", "value": "global"}, {"name": "B", "value": "global"}],
    "envFrom": [{"configMapRef": {"name": "global-cm"}}],
    "nodeSelector": {"pool": "general", "disk": "ssd"},
    "tolerations": [{"key": "shared", "operator": "Exists"}],
    "affinity": {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    },
}
OWN_AFFINITY = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
OWN = {
    "env": [{"name": "B", "value": "own"}, {"name": "C", "value": "own"}],
    "envFrom": [{"secretRef": {"name": "own-secret"}}],
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": OWN_AFFINITY,
    "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
    "labels": {"team": "data"},
    "podAnnotations": {"note": "x"},
    "priorityClassName": "batch-high",
}


def _check_precedence(pod: dict[str, Any], ctr: dict[str, Any], where: str) -> None:
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    assert (env["A"], env["B"], env["C"]) == ("global", "own", "own"), where
    names = [e["name"] for e in ctr["env"]]
    assert names.index("A") < names.index("B") < names.index("C"), where  # B kept its place
    assert ctr["envFrom"] == [{"configMapRef": {"name": "global-cm"}}, {"secretRef": {"name": "own-secret"}}]
    assert pod["nodeSelector"] == {"pool": "gpu", "disk": "ssd"}, where
    assert [t["key"] for t in pod["tolerations"]] == ["shared", "gpu"], where
    assert pod["affinity"] == {**GLOBAL["affinity"], **OWN_AFFINITY}, where
    assert pod["priorityClassName"] == "batch-high", where


def test_component_settings_add_to_and_override_the_spec_level_ones() -> None:
    spec = {**GLOBAL, **every_component(OWN)}
    spec["dbt"]["enabled"] = True
    w = wf(**spec)
    for field, key in FIELDS.items():
        obj = workloads(w)[key]
        template = obj["spec"]["template"]
        pod = template["spec"]
        _check_precedence(pod, main_container(pod), field)
        assert main_container(pod)["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}, field
        assert template["metadata"]["labels"]["team"] == "data", field
        assert obj["metadata"]["labels"]["team"] == "data", field
        assert template["metadata"]["annotations"]["note"] == "x", field
        # The operator's labels stay: selectors keep matching.
        assert (
            obj["spec"].get("selector", {}).get("matchLabels", {}).items()
            <= template["metadata"]["labels"].items()
        )
    run = run_config(w)
    pod, ctr = run["pod_spec_config"], run["container_config"]
    _check_precedence(pod, ctr, "runs")
    assert ctr["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert run["pod_template_spec_metadata"]["labels"]["team"] == "data"
    assert run["pod_template_spec_metadata"]["annotations"] == {"note": "x"}
    assert run["job_metadata"]["labels"]["team"] == "data"
    assert run["pod_template_spec_metadata"]["labels"]["app.kubernetes.io/component"] == "run"


def test_settings_of_one_component_stay_in_it() -> None:
    w = wf(dbt={"enabled": True}, webserver=OWN)
    found = workloads(w)
    web = found["Deployment/demo-webserver"]["spec"]["template"]["spec"]
    assert web["priorityClassName"] == "batch-high"
    for key in ("Deployment/demo-daemon", "Deployment/demo-code-server", "Job"):
        pod = found[key]["spec"]["template"]["spec"]
        assert "priorityClassName" not in pod and "nodeSelector" not in pod, key
        assert all(e["name"] != "C" for e in main_container(pod)["env"]), key
    run = run_config(w)
    assert "priorityClassName" not in run["pod_spec_config"] and "resources" not in run["container_config"]


def test_dbt_env_and_resources_reach_the_compile_wherever_it_runs() -> None:
    w = wf(
        dbt={
            "enabled": True,
            "env": [{"name": "DBT_X", "value": "1"}],
            "resources": {"limits": {"cpu": "3"}},
        },
        codeServer={"resources": {"limits": {"cpu": "1"}}},
    )
    job_pod = workloads(w)["Job"]["spec"]["template"]["spec"]
    init = components.code_server_deployment(w, shared(w))["spec"]["template"]["spec"]["initContainers"][0]
    # Run pods get it from the code location's container context (the code server's env).
    env = components.code_server_deployment(w, shared(w))["spec"]["template"]["spec"]["containers"][0]["env"]
    context = json.loads(next(e["value"] for e in env if e["name"] == "DAGSTER_CONTAINER_CONTEXT"))
    run_init = context["k8s"]["run_k8s_config"]["pod_spec_config"]["initContainers"][0]
    for ctr in (main_container(job_pod), init, run_init):
        assert {"name": "DBT_X", "value": "1"} in ctr["env"]
        assert ctr["resources"] == {"limits": {"cpu": "3"}}


def test_dbt_hash_follows_compile_inputs_and_keeps_old_values() -> None:
    plain = dbt.spec_hash(wf(dbt={"enabled": True}))
    assert plain == dbt.spec_hash(wf(dbt={"enabled": True, "nodeSelector": {"a": "b"}, "labels": {"x": "y"}}))
    assert plain != dbt.spec_hash(wf(dbt={"enabled": True, "env": [{"name": "X", "value": "1"}]}))
    assert plain != dbt.spec_hash(wf(dbt={"enabled": True, "envFrom": [{"secretRef": {"name": "s"}}]}))
    overrides = {"spec": {"containers": [{"name": "dbt-compile", "args": ["--x"]}]}}
    assert plain != dbt.spec_hash(wf(dbt={"enabled": True, "podOverrides": overrides}))


def test_code_server_id_changes_with_its_own_env_only() -> None:
    base = wf()
    ids = {
        "plain": components.code_server_server_id(base, shared(base)),
        **{
            name: components.code_server_server_id(w, shared(w))
            for name, w in (
                ("own env", wf(codeServer={"env": [{"name": "X", "value": "1"}]})),
                (
                    "overrides",
                    wf(
                        codeServer={
                            "podOverrides": {"spec": {"containers": [{"name": "code-server", "args": ["a"]}]}}
                        }
                    ),
                ),
            )
        },
    }
    assert len(set(ids.values())) == 3, ids
    web = wf(webserver={"env": [{"name": "X", "value": "1"}]})
    assert components.code_server_server_id(web, shared(web)) == ids["plain"]


def test_pod_overrides_add_a_volume_mount_and_a_sidecar_to_each_component() -> None:
    def overrides(container: str) -> dict[str, Any]:
        return {
            "metadata": {"annotations": {"example.com/extra": "1"}},
            "spec": {
                "volumes": [{"name": "ca", "configMap": {"name": "ca-bundle"}}],
                "containers": [
                    {
                        "name": container,
                        "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readOnly": True}],
                    },
                    {
                        "name": "proxy",
                        "image": "proxy:1",
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    },
                ],
            },
        }

    spec = {
        field: {"podOverrides": overrides(name)}
        for field, name in (
            ("webserver", "webserver"),
            ("daemon", "daemon"),
            ("codeServer", "code-server"),
            ("dbt", "dbt-compile"),
        )
    }
    spec["dbt"]["enabled"] = True
    spec["runLauncher"] = {"runs": {"podOverrides": overrides("dagster")}}
    w = wf(**spec)
    for field, key in FIELDS.items():
        template = workloads(w)[key]["spec"]["template"]
        pod = template["spec"]
        assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in pod["volumes"], field
        main, proxy = pod["containers"]
        assert {"name": "ca", "mountPath": "/etc/ca", "readOnly": True} in main["volumeMounts"], field
        assert main["image"] == "img:1" and main["securityContext"]["runAsNonRoot"] is True, field
        assert proxy["name"] == "proxy" and proxy["securityContext"]["allowPrivilegeEscalation"] is False, (
            field
        )
        assert proxy["securityContext"]["capabilities"] == {"drop": ["ALL"]}, field
        assert template["metadata"]["annotations"]["example.com/extra"] == "1", field
        if key != "Job":
            assert CHECKSUM_ANNOTATION in template["metadata"]["annotations"], field
    run = run_config(w)
    assert {"name": "ca", "mountPath": "/etc/ca", "readOnly": True} in run["container_config"]["volumeMounts"]
    assert "name" not in run["container_config"]  # dagster-k8s names its run container itself
    assert [c["name"] for c in run["pod_spec_config"]["containers"]] == ["proxy"]
    assert {"name": "ca", "configMap": {"name": "ca-bundle"}} in run["pod_spec_config"]["volumes"]
    assert run["pod_template_spec_metadata"]["annotations"] == {"example.com/extra": "1"}


def test_run_config_with_every_setting_passes_the_launcher_schema() -> None:
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    overrides = {
        "spec": {
            "volumes": [{"name": "ca", "secret": {"secretName": "ca"}}],
            "containers": [{"name": "dagster", "volumeMounts": [{"name": "ca", "mountPath": "/ca"}]}],
        }
    }
    w = wf(dbt={"enabled": True}, runLauncher={"runs": {**OWN, "podOverrides": overrides}})
    doc = yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])
    result = process_config(K8sRunLauncher.config_type(), doc["run_launcher"]["config"])
    assert result.success, result.errors


def test_rendered_containers_are_the_ones_the_model_knows() -> None:
    """The model lets podOverrides leave out the image of exactly these containers."""
    w = wf(dbt={"enabled": True})
    found = workloads(w)
    for field, model_class in (
        ("webserver", m.Webserver),
        ("daemon", m.Daemon),
        ("codeServer", m.CodeServer),
        ("dbt", m.Dbt),
    ):
        pod = found[FIELDS[field]]["spec"]["template"]["spec"]
        names = {c["name"] for c in pod["containers"] + pod.get("initContainers", [])}
        assert names == model_class.CONTAINERS or (field == "dbt" and names <= model_class.CONTAINERS), field
    assert m.Runs.CONTAINERS == {config.RUN_CONTAINER}


@pytest.mark.parametrize(
    ("field", "overrides", "path"),
    [
        (
            "webserver",
            {"spec": {"containers": [{"name": "webserver", "securityContext": {"privileged": True}}]}},
            "spec.webserver.podOverrides.spec.containers[0].securityContext.privileged",
        ),
        (
            "daemon",
            {
                "spec": {
                    "containers": [{"name": "daemon", "securityContext": {"allowPrivilegeEscalation": True}}]
                }
            },
            "spec.daemon.podOverrides.spec.containers[0].securityContext.allowPrivilegeEscalation",
        ),
        (
            "codeServer",
            {"spec": {"securityContext": {"runAsNonRoot": False}}},
            "spec.codeServer.podOverrides.spec.securityContext.runAsNonRoot",
        ),
        (
            "dbt",
            {
                "spec": {
                    "containers": [
                        {"name": "dbt-compile", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
                    ]
                }
            },
            "spec.dbt.podOverrides.spec.containers[0].securityContext.capabilities.add",
        ),
        (
            "webserver",
            {"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}},
            "spec.webserver.podOverrides.spec.securityContext.seccompProfile",
        ),
        (
            "webserver",
            {"spec": {"containers": [{"name": "webserver", "securityContext": None}]}},
            "spec.webserver.podOverrides.spec.containers[0].securityContext",
        ),
        (
            "daemon",
            {
                "spec": {
                    "containers": [
                        {"name": "daemon", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}
                    ]
                }
            },
            "spec.daemon.podOverrides.spec.containers[0].securityContext.capabilities.drop",
        ),
        (
            "codeServer",
            {"spec": {"initContainers": [{"name": "setup"}]}},
            "spec.codeServer.podOverrides.spec.initContainers[0].image",
        ),
        (
            "webserver",
            {"spec": {"containers": [{"name": "webserver", "image": ""}]}},
            "spec.webserver.podOverrides.spec.containers[0].image",
        ),
        ("webserver", {"spec": {"hostNetwork": True}}, "spec.webserver.podOverrides.spec.hostNetwork"),
        (
            "daemon",
            {"spec": {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}},
            "spec.daemon.podOverrides.spec.volumes[0].hostPath",
        ),
        (
            "webserver",
            {
                "spec": {
                    "containers": [{"name": "webserver", "ports": [{"containerPort": 80, "hostPort": 80}]}]
                }
            },
            "spec.webserver.podOverrides.spec.containers[0].ports[0].hostPort",
        ),
        (
            "webserver",
            {"spec": {"containers": [{"image": "x:1"}]}},
            "spec.webserver.podOverrides.spec.containers[0]",
        ),
        (
            "webserver",
            {
                "spec": {
                    "containers": [{"name": "webserver", "env": [{"name": "DAGSTER_HOME", "value": "/x"}]}]
                }
            },
            "spec.webserver.podOverrides.spec.containers[0].env[0].name",
        ),
        (
            "webserver",
            {"spec": {"serviceAccountName": "other"}},
            "spec.webserver.podOverrides.spec.serviceAccountName",
        ),
        (
            "webserver",
            {"metadata": {"labels": {"app.kubernetes.io/component": "x"}}},
            "spec.webserver.podOverrides.metadata.labels.app.kubernetes.io/component",
        ),
        ("webserver", {"kind": "Pod"}, "spec.webserver.podOverrides.kind"),
        (
            "webserver",
            {"spec": {"securityContext": {"runAsUser": 0}}},
            "spec.webserver.podOverrides.spec.securityContext.runAsUser",
        ),
    ],
)
def test_a_pod_overrides_problem_is_invalid_spec_naming_the_field(
    field: str, overrides: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_spec({"image": "i", field: {"podOverrides": overrides}})
    assert str(raised.value).startswith(f"{path}: "), str(raised.value)


def test_run_pod_overrides_problems_name_the_runs_field() -> None:
    bad = {"spec": {"containers": [{"name": "dagster", "securityContext": {"privileged": True}}]}}
    with pytest.raises(
        InvalidSpec,
        match=r"^spec\.runLauncher\.runs\.podOverrides\.spec\.containers\[0\]\.securityContext\.privileged: ",
    ):
        parse_spec({"image": "i", "runLauncher": {"runs": {"podOverrides": bad}}})


def test_a_merge_problem_is_found_at_render_time_naming_the_field() -> None:
    w = wf(
        webserver={
            "podOverrides": {
                "spec": {
                    "containers": [
                        {"name": "webserver", "volumeMounts": [{"name": "missing", "mountPath": "/m"}]}
                    ]
                }
            }
        }
    )
    with pytest.raises(
        InvalidSpec,
        match=r"^spec\.webserver\.podOverrides\.spec\.containers\[0\]\.volumeMounts\[0\]\.name: no volume",
    ):
        render_all(w)
    runs = wf(
        runLauncher={
            "runs": {"podOverrides": {"spec": {"initContainers": [{"name": "dagster", "image": "x:1"}]}}}
        }
    )
    with pytest.raises(
        InvalidSpec, match=r"^spec\.runLauncher\.runs\.podOverrides\.spec\.initContainers\[0\]\.name"
    ):
        render_all(runs)


def test_component_fields_are_checked_like_the_spec_level_ones() -> None:
    cases = [
        (
            {"webserver": {"env": [{"name": "DAGSTER_PG_PASSWORD", "value": "x"}]}},
            r"spec\.webserver\.env: DAGSTER_PG_PASSWORD is set by the operator",
        ),
        (
            {"daemon": {"labels": {"app.kubernetes.io/instance": "x"}}},
            r"spec\.daemon\.labels: app\.kubernetes\.io/instance is set by the operator",
        ),
        ({"codeServer": {"nodeSelector": {"a": "b c"}}}, r"spec\.codeServer\.nodeSelector"),
        ({"dbt": {"priorityClassName": "Not_Valid"}}, r"spec\.dbt\.priorityClassName"),
        (
            {"runLauncher": {"runs": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}},
            r"spec\.runLauncher\.runs\.resources",
        ),
        (
            {"runLauncher": {"runs": {"tolerations": [{"operator": "Exists", "value": "v"}]}}},
            r"spec\.runLauncher\.runs\.tolerations\.0",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(InvalidSpec, match=message):
            parse_spec({"image": "i", **extra})


def test_without_component_settings_the_render_is_unchanged_in_shape() -> None:
    w = wf(dbt={"enabled": True})
    for key, obj in workloads(w).items():
        pod = obj["spec"]["template"]["spec"]
        assert "priorityClassName" not in pod and "nodeSelector" not in pod, key
        assert obj["spec"]["template"]["metadata"]["labels"] == w.labels(
            obj["metadata"]["labels"]["app.kubernetes.io/component"]
        ), key
    run = run_config(w)
    assert run["pod_template_spec_metadata"] == {"labels": w.selector("run")}
    assert "containers" not in run["pod_spec_config"] and "resources" not in run["container_config"]


def test_a_run_tag_goes_on_top_of_the_runs_settings() -> None:
    """dagster-k8s's own merge (launcher config, then a run's dagster-k8s/config tag) and job construction
    over the rendered config: the tag wins where it speaks (DEEP merge: maps merged, values replaced),
    everything the operator rendered stays."""
    import json

    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )
    from kubernetes.client import ApiClient

    overrides = {
        "spec": {
            "volumes": [{"name": "ca", "configMap": {"name": "ca"}}],
            "containers": [
                {"name": "dagster", "volumeMounts": [{"name": "ca", "mountPath": "/ca"}]},
                {"name": "side", "image": "side:1"},
            ],
        }
    }
    runs = {
        "nodeSelector": {"pool": "gpu"},
        "resources": {"limits": {"cpu": "2"}},
        "labels": {"team": "data"},
        "podOverrides": overrides,
    }
    w = wf(imagePullSecrets=[{"name": "reg"}], runLauncher={"runs": runs})
    doc = yaml.safe_load(config.instance_configmap(w, shared(w))["data"]["dagster.yaml"])
    cfg = doc["run_launcher"]["config"]
    launcher = K8sContainerContext(
        image_pull_secrets=cfg["image_pull_secrets"],
        service_account_name=cfg["service_account_name"],
        namespace=cfg["job_namespace"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(cfg["run_k8s_config"]),
    )
    tag = {
        "container_config": {"resources": {"limits": {"cpu": "8"}}},
        "pod_spec_config": {"node_selector": {"disk": "nvme"}},
    }
    run = K8sContainerContext(
        run_k8s_config=get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(tag)})
    )
    merged = launcher.merge(run)
    job_config = DagsterK8sJobConfig(
        job_image="img:1", dagster_home=cfg["dagster_home"], instance_config_map=cfg["instance_config_map"]
    )
    job = construct_dagster_k8s_job(job_config, ["dagster"], "run-1", merged.run_k8s_config, "run-1")
    template = ApiClient().sanitize_for_serialization(job)["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "disk": "nvme"}
    assert pod["imagePullSecrets"] == [{"name": "reg"}]
    main, side = pod["containers"]
    assert (main["name"], main["image"], main["resources"]) == ("dagster", "img:1", {"limits": {"cpu": "8"}})
    assert {"name": "ca", "mountPath": "/ca"} in main["volumeMounts"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert side["image"] == "side:1" and side["securityContext"]["allowPrivilegeEscalation"] is False
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "dagster-home", "ca"]
    assert template["metadata"]["labels"]["team"] == "data"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "run"


def test_run_pod_overrides_may_not_redo_what_the_code_location_adds() -> None:
    bad = {
        "spec": {
            "volumes": [{"name": "dbt-target", "emptyDir": {}}],
            "initContainers": [{"name": "dbt-compile", "image": "x:1"}],
        }
    }
    with pytest.raises(InvalidSpec) as raised:
        parse_spec({"image": "i", "runLauncher": {"runs": {"podOverrides": bad}}})
    message = str(raised.value)
    assert "spec.runLauncher.runs.podOverrides.spec.initContainers[0].name: dbt-compile comes with" in message
    assert "spec.runLauncher.runs.podOverrides.spec.volumes[0].name: dbt-target comes with" in message
