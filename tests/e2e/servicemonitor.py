"""ServiceMonitor objects read from the API server, turned into a Prometheus scrape configuration.

The documented equivalent of what the Prometheus Operator renders for a ServiceMonitor (docs/metrics.md, "How
Prometheus finds the targets"), written here because the operator's own rendering cannot be built here (see
there). `scrape_configs` gives one scrape job per endpoint of each monitor:

- job name `serviceMonitor/<namespace>/<name>/<endpoint index>`, as the operator names it;
- Kubernetes service discovery, role `endpointslice` (what the operator renders for a Prometheus with
  `serviceDiscoveryRole: EndpointSlice`; v1 Endpoints are deprecated since Kubernetes 1.33), in the
  namespaces of `spec.namespaceSelector` (`matchNames`; `any: true` for all; none: the monitor's own);
- the Service selector as relabelling: `keep` for each `matchLabels` entry and `In`/`Exists`, `drop` for
  `NotIn`/`DoesNotExist`, on the Service's labels;
- the endpoint's `port` (a Service port name) or `targetPort` (a container port name or number) as a `keep`;
  pods that have finished (Succeeded, Failed) dropped;
- `path`, `scheme`, `interval`, `scrapeTimeout`, `honorLabels` copied;
- target labels `namespace`, `service`, `pod`, `container`, `endpoint` (the port name) and `job` (the
  Service's name, or the value of its `spec.jobLabel` label): what the chart's alerts and dashboard select on.

Any other field of a ServiceMonitor is refused with an error naming the monitor and the field, rather than
silently scraping something the real operator would not.

Debian's Prometheus is built without Kubernetes service discovery, so on the bed `file_sd` stands in for it:
`discover` lists the EndpointSlices, Services and Pods itself and gives every endpoint address and port the
`__meta_kubernetes_*` labels Prometheus's `endpointslice` role gives it, written to a file that a
`file_sd_configs` entry reads. The relabelling, where the selection happens, is unchanged and runs in
Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
SPEC_FIELDS = {"selector", "namespaceSelector", "endpoints", "jobLabel"}
PORT_NAME = "__meta_kubernetes_endpointslice_port_name"


class ServiceMonitorError(ValueError):
    """A ServiceMonitor this translation cannot express; the message names the monitor and the field."""


def _label(name: str) -> str:
    """A Kubernetes label name as Prometheus's service discovery spells it in meta label names."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _alternatives(values: list[str]) -> str:
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def _selector_relabelings(selector: dict[str, Any], where: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        rules.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_service_label_{_label(key)}",
                    f"__meta_kubernetes_service_labelpresent_{_label(key)}",
                ],
                "regex": f"{_alternatives([str(value)])};true",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator")
        value_labels = [
            f"__meta_kubernetes_service_label_{_label(key)}",
            f"__meta_kubernetes_service_labelpresent_{_label(key)}",
        ]
        present = [f"__meta_kubernetes_service_labelpresent_{_label(key)}"]
        values = [str(v) for v in expression.get("values") or []]
        if operator in ("In", "NotIn"):
            action = "keep" if operator == "In" else "drop"
            regex = f"{_alternatives(values)};true"
            rules.append({"action": action, "source_labels": value_labels, "regex": regex})
        elif operator in ("Exists", "DoesNotExist"):
            action = "keep" if operator == "Exists" else "drop"
            rules.append({"action": action, "source_labels": present, "regex": "true"})
        else:
            raise ServiceMonitorError(f"{where}: spec.selector.matchExpressions operator {operator!r}")
    return rules


def _namespaces(spec: dict[str, Any], own: str) -> list[str] | None:
    """None means every namespace."""
    selector = spec.get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return list(selector.get("matchNames") or [own])


def scrape_configs(monitors: list[dict[str, Any]], kubeconfig: Path | None = None) -> list[dict[str, Any]]:
    """Prometheus `scrape_configs` entries for these ServiceMonitors (as `kubectl get -o json` lists them);
    service discovery through kubeconfig (else in-cluster)."""
    port_name = PORT_NAME
    jobs = []
    for monitor in monitors:
        meta, spec = monitor["metadata"], monitor.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        where = f"ServiceMonitor {namespace}/{name}"
        unknown = sorted(set(spec) - SPEC_FIELDS)
        if unknown:
            raise ServiceMonitorError(f"{where}: spec.{unknown[0]} is not translated")
        sd: dict[str, Any] = {"role": "endpointslice"}
        if kubeconfig is not None:
            sd["kubeconfig_file"] = str(kubeconfig)
        names = _namespaces(spec, namespace)
        if names is not None:
            sd["namespaces"] = {"names": names}
        selection = _selector_relabelings(spec.get("selector") or {}, where)
        job_source = "__meta_kubernetes_service_name"
        if spec.get("jobLabel"):
            job_source = f"__meta_kubernetes_service_label_{_label(spec['jobLabel'])}"
        for index, endpoint in enumerate(spec.get("endpoints") or []):
            unknown = sorted(set(endpoint) - ENDPOINT_FIELDS)
            if unknown:
                raise ServiceMonitorError(f"{where}: spec.endpoints[{index}].{unknown[0]} is not translated")
            rules = list(selection)
            if "port" in endpoint:
                rules.append(
                    {"action": "keep", "source_labels": [port_name], "regex": re.escape(endpoint["port"])}
                )
            elif "targetPort" in endpoint:
                target = endpoint["targetPort"]
                kind = "number" if isinstance(target, int) else "name"
                rules.append(
                    {
                        "action": "keep",
                        "source_labels": [f"__meta_kubernetes_pod_container_port_{kind}"],
                        "regex": re.escape(str(target)),
                    }
                )
            rules.append(
                {
                    "action": "drop",
                    "source_labels": ["__meta_kubernetes_pod_phase"],
                    "regex": "(Failed|Succeeded)",
                }
            )
            for target_label, source in (
                ("namespace", "__meta_kubernetes_namespace"),
                ("service", "__meta_kubernetes_service_name"),
                ("pod", "__meta_kubernetes_pod_name"),
                ("container", "__meta_kubernetes_pod_container_name"),
                ("endpoint", port_name),
                ("job", job_source),
            ):
                rules.append({"source_labels": [source], "target_label": target_label})
            job: dict[str, Any] = {
                "job_name": f"serviceMonitor/{namespace}/{name}/{index}",
                "kubernetes_sd_configs": [sd],
                "metrics_path": endpoint.get("path", "/metrics"),
                "scheme": endpoint.get("scheme", "http"),
                "relabel_configs": rules,
            }
            if "interval" in endpoint:
                job["scrape_interval"] = endpoint["interval"]
            if "scrapeTimeout" in endpoint:
                job["scrape_timeout"] = endpoint["scrapeTimeout"]
            if endpoint.get("honorLabels"):
                job["honor_labels"] = True
            jobs.append(job)
    return jobs


def _labels(prefix: str, labels: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in labels.items():
        out[f"__meta_kubernetes_{prefix}_label_{_label(key)}"] = value
        out[f"__meta_kubernetes_{prefix}_labelpresent_{_label(key)}"] = "true"
    return out


def _endpoint_groups(
    slice_: dict[str, Any], services: dict[tuple[str, str], Any], pods: dict[tuple[str, str], Any]
) -> list[dict[str, Any]]:
    namespace = slice_["metadata"]["namespace"]
    base = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_endpointslice_name": slice_["metadata"]["name"],
        "__meta_kubernetes_endpointslice_address_type": slice_.get("addressType", ""),
    }
    service_name = (slice_["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
    service = services.get((namespace, service_name or ""))
    if service is not None:
        base["__meta_kubernetes_service_name"] = service["metadata"]["name"]
        base.update(_labels("service", service["metadata"].get("labels") or {}))
    groups = []
    for endpoint in slice_.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        ref = endpoint.get("targetRef") or {}
        pod = pods.get((namespace, ref.get("name", ""))) if ref.get("kind") == "Pod" else None
        for port in slice_.get("ports") or []:
            labels = dict(base)
            labels["__meta_kubernetes_endpointslice_port"] = str(port.get("port", ""))
            labels[PORT_NAME] = port.get("name", "")
            labels["__meta_kubernetes_endpointslice_port_protocol"] = port.get("protocol", "")
            for condition in ("ready", "serving", "terminating"):
                if condition in conditions:
                    key = f"__meta_kubernetes_endpointslice_endpoint_conditions_{condition}"
                    labels[key] = str(conditions[condition]).lower()
            if ref:
                labels["__meta_kubernetes_endpointslice_address_target_kind"] = ref.get("kind", "")
                labels["__meta_kubernetes_endpointslice_address_target_name"] = ref.get("name", "")
            if pod is not None:
                labels["__meta_kubernetes_pod_name"] = pod["metadata"]["name"]
                labels["__meta_kubernetes_pod_phase"] = pod["status"].get("phase", "")
                labels["__meta_kubernetes_pod_ip"] = pod["status"].get("podIP", "")
                labels["__meta_kubernetes_pod_node_name"] = pod["spec"].get("nodeName", "")
                labels.update(_labels("pod", pod["metadata"].get("labels") or {}))
                for container in pod["spec"]["containers"]:
                    for cport in container.get("ports") or []:
                        if cport.get("containerPort") == port.get("port"):
                            labels["__meta_kubernetes_pod_container_name"] = container["name"]
                            labels["__meta_kubernetes_pod_container_port_name"] = cport.get("name", "")
                            labels["__meta_kubernetes_pod_container_port_number"] = str(
                                cport["containerPort"]
                            )
            for address in endpoint.get("addresses") or []:
                groups.append({"targets": [f"{address}:{port.get('port')}"], "labels": labels})
    return groups


def discover(job: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Prometheus's `endpointslice` role discovers for one job of `scrape_configs`, from the cluster's
    EndpointSlices, Services and Pods (`kubectl get endpointslices,services,pods -A -o json`): `file_sd`
    target groups, one per endpoint address and port."""
    namespaces = ((job["kubernetes_sd_configs"][0].get("namespaces") or {}).get("names")) or None
    chosen = [o for o in objects if namespaces is None or o["metadata"]["namespace"] in namespaces]
    by_name = {
        kind: {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in chosen if o["kind"] == kind}
        for kind in ("Service", "Pod")
    }
    groups = []
    for slice_ in (o for o in chosen if o["kind"] == "EndpointSlice"):
        groups += _endpoint_groups(slice_, by_name["Service"], by_name["Pod"])
    return groups


def with_file_sd(
    jobs: list[dict[str, Any]], objects: list[dict[str, Any]], directory: Path
) -> list[dict[str, Any]]:
    """The jobs with their Kubernetes discovery replaced by a file written in directory (see `discover`)."""
    out = []
    directory.mkdir(parents=True, exist_ok=True)
    for index, job in enumerate(jobs):
        path = directory / f"targets-{index}.json"
        path.write_text(json.dumps(discover(job, objects), indent=1))
        rest = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
        out.append({**rest, "file_sd_configs": [{"files": [str(path)]}]})
    return out
