"""A `podOverrides` fragment as the user wrote it, judged before any merge: its shape, and everything in it
that Pod Security "restricted" refuses, each problem named by its path inside the fragment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from phlo_dagster import constants as c
from phlo_operator.names import LOCATION_LABEL

# The list fields merged item by item, and the key that identifies an item (Kubernetes' patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
CONTAINER_LISTS = ("containers", "initContainers")
# Labels and annotations the operator owns: selectors, rollout checksums.
OPERATOR_LABELS = frozenset(
    {c.LABEL_NAME, c.LABEL_INSTANCE, c.LABEL_COMPONENT, c.LABEL_PART_OF, c.LABEL_MANAGED_BY, LOCATION_LABEL}
)
OPERATOR_ANNOTATION_PREFIX = "phlo.dev/"
# Pod fields the operator sets from other spec fields (or that a pod template must not have).
OWNED_POD_FIELDS = {
    "serviceAccountName": "use spec.serviceAccountName",
    "serviceAccount": "use spec.serviceAccountName",
    "automountServiceAccountToken": "the operator mounts a token only where the pod talks to the API server",
    "ephemeralContainers": "a pod template cannot have them",
    "nodeName": "use nodeSelector or affinity",
}
# Pod Security "restricted" (and "baseline", which it includes).
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Problem = tuple[str, str]  # path inside the fragment, message


class FragmentError(ValueError):
    """Problems at paths inside a podOverrides fragment (format_errors appends each path to the field's)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


def check(
    fragment: Any, containers: frozenset[str], reserved_env: frozenset[str] = frozenset()
) -> list[Problem]:
    """Every problem of a PodTemplateSpec fragment; `containers` are the ones the operator renders (an
    override of one may leave out its image; a new one must name it)."""
    return list(_fragment(fragment, containers, reserved_env))


def _fragment(fragment: Any, containers: frozenset[str], reserved_env: frozenset[str]) -> Iterator[Problem]:
    if not isinstance(fragment, dict):
        yield "", "must be a PodTemplateSpec fragment (an object with metadata and/or spec)"
        return
    for key in fragment:
        if key not in ("metadata", "spec"):
            yield key, "unknown field (a PodTemplateSpec has metadata and spec)"
    meta = fragment.get("metadata")
    if meta is not None:
        yield from _metadata(meta)
    spec = fragment.get("spec")
    if spec is not None:
        yield from _pod_spec(spec, containers, reserved_env)


def _metadata(meta: Any) -> Iterator[Problem]:
    if not isinstance(meta, dict):
        yield "metadata", "must be an object (labels, annotations)"
        return
    for key, value in meta.items():
        where = f"metadata.{key}"
        if key not in ("labels", "annotations"):
            yield where, "only labels and annotations can be set on the pod template"
        elif not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            yield where, "must map strings to strings"
        elif key == "labels":
            for label in sorted(set(value) & OPERATOR_LABELS):
                yield f"{where}.{label}", "the operator sets this label (its selectors use it)"
        else:
            for annotation in sorted(a for a in value if a.startswith(OPERATOR_ANNOTATION_PREFIX)):
                yield f"{where}.{annotation}", "the operator sets phlo.dev/ annotations"


def _pod_spec(spec: Any, containers: frozenset[str], reserved_env: frozenset[str]) -> Iterator[Problem]:
    if not isinstance(spec, dict):
        yield "spec", "must be an object (a PodSpec fragment)"
        return
    for key, why in OWNED_POD_FIELDS.items():
        if key in spec:
            yield f"spec.{key}", f"cannot be overridden: {why}"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"spec.{key}", "Pod Security forbids sharing the host's namespaces"
    if "securityContext" in spec:
        yield from _pod_security(spec["securityContext"], "spec.securityContext")
    for field, key in MERGE_KEYS.items():
        if field in spec and field not in ("env", "volumeMounts", "ports", "volumeDevices"):
            yield from _keyed_list(spec[field], f"spec.{field}", key)
    for i, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, dict):
            for source in sorted(set(volume) - {"name"} - RESTRICTED_VOLUMES):
                yield (
                    f"spec.volumes[{i}].{source}",
                    "Pod Security restricted allows only volumes of type "
                    + ", ".join(sorted(RESTRICTED_VOLUMES)),
                )
    names: dict[str, str] = {}
    for field in CONTAINER_LISTS:
        items = spec.get(field)
        if not isinstance(items, list):
            continue
        for i, ctr in enumerate(items):
            where = f"spec.{field}[{i}]"
            if not isinstance(ctr, dict) or not isinstance(ctr.get("name"), str):
                continue  # _keyed_list named it
            name = ctr["name"]
            if name in names and names[name] != field:
                yield f"{where}.name", f"{name!r} is also in spec.{names[name]} (container names are unique)"
            names.setdefault(name, field)
            yield from _container(ctr, where, name in containers, reserved_env)


def _keyed_list(items: Any, where: str, key: str) -> Iterator[Problem]:
    if not isinstance(items, list):
        yield where, f"must be a list (merged item by item, by {key})"
        return
    seen: set[Any] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get(key) in (None, ""):
            yield f"{where}[{i}]", f"needs {key} (items are merged by {key})"
            continue
        if item[key] in seen:
            yield f"{where}[{i}].{key}", f"{item[key]!r} appears twice"
        seen.add(item[key])


def _container(
    ctr: dict[str, Any], where: str, known: bool, reserved_env: frozenset[str]
) -> Iterator[Problem]:
    name = ctr["name"]
    if not _DNS_LABEL.fullmatch(name) or len(name) > 63:
        yield f"{where}.name", f"{name!r} is not a valid container name (a DNS label)"
    image = ctr.get("image")
    if not known and not (isinstance(image, str) and image):
        yield f"{where}.image", f"a new container ({name!r}) needs an image"
    elif known and "image" in ctr and not (isinstance(image, str) and image):
        yield f"{where}.image", "cannot be removed or empty"
    for field in ("env", "volumeMounts", "ports", "volumeDevices"):
        if field in ctr:
            yield from _keyed_list(ctr[field], f"{where}.{field}", MERGE_KEYS[field])
    for j, var in enumerate(ctr.get("env") or []):
        if isinstance(var, dict) and var.get("name") in reserved_env:
            yield f"{where}.env[{j}].name", f"{var['name']} is set by the operator"
    for j, port in enumerate(ctr.get("ports") or []):
        if isinstance(port, dict) and port.get("hostPort"):
            yield f"{where}.ports[{j}].hostPort", "Pod Security forbids host ports"
    for j, mount in enumerate(ctr.get("volumeMounts") or []):
        if isinstance(mount, dict) and not isinstance(mount.get("name"), str):
            yield f"{where}.volumeMounts[{j}].name", "names the volume to mount: required"
    if "securityContext" in ctr:
        yield from _container_security(ctr["securityContext"], f"{where}.securityContext")


def _pod_security(sc: Any, where: str) -> Iterator[Problem]:
    if not isinstance(sc, dict):
        yield where, "cannot be removed: set its fields instead (the hardened defaults stay)"
        return
    yield from _common_security(sc, where)
    for i, sysctl in enumerate(sc.get("sysctls") or []):
        if isinstance(sysctl, dict) and sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"{where}.sysctls[{i}].name", "Pod Security allows only the safe sysctls"


def _container_security(sc: Any, where: str) -> Iterator[Problem]:
    if not isinstance(sc, dict):
        yield where, "cannot be removed: set its fields instead (the hardened defaults stay)"
        return
    yield from _common_security(sc, where)
    if sc.get("privileged"):
        yield f"{where}.privileged", "Pod Security restricted forbids privileged containers"
    if "allowPrivilegeEscalation" in sc and sc["allowPrivilegeEscalation"] is not False:
        yield f"{where}.allowPrivilegeEscalation", "Pod Security restricted requires false"
    if "procMount" in sc and sc["procMount"] not in ("Default", None):
        yield f"{where}.procMount", "Pod Security allows only Default"
    if "capabilities" in sc:
        caps = sc["capabilities"]
        if not isinstance(caps, dict):
            yield f"{where}.capabilities", "cannot be removed: Pod Security restricted requires drop: [ALL]"
        else:
            for cap in caps.get("add") or []:
                if cap not in ADDABLE_CAPABILITIES:
                    yield (
                        f"{where}.capabilities.add",
                        f"Pod Security restricted allows adding only NET_BIND_SERVICE, not {cap}",
                    )
            if "drop" in caps and "ALL" not in (caps["drop"] or []):
                yield f"{where}.capabilities.drop", "Pod Security restricted requires drop: [ALL]"


def _common_security(sc: dict[str, Any], where: str) -> Iterator[Problem]:
    if "runAsNonRoot" in sc and sc["runAsNonRoot"] is not True:
        yield f"{where}.runAsNonRoot", "Pod Security restricted requires true"
    if "runAsUser" in sc and sc["runAsUser"] == 0:
        yield f"{where}.runAsUser", "Pod Security restricted forbids running as root (uid 0)"
    if "seccompProfile" in sc:
        profile = sc["seccompProfile"]
        if not isinstance(profile, dict) or profile.get("type") not in SECCOMP_TYPES:
            yield (
                f"{where}.seccompProfile",
                "Pod Security restricted requires type RuntimeDefault or Localhost",
            )
    if "appArmorProfile" in sc:
        profile = sc["appArmorProfile"]
        if isinstance(profile, dict) and profile.get("type") == "Unconfined":
            yield f"{where}.appArmorProfile.type", "Pod Security forbids Unconfined"
    options = sc.get("seLinuxOptions")
    if isinstance(options, dict):
        for key in ("user", "role"):
            if options.get(key):
                yield f"{where}.seLinuxOptions.{key}", "Pod Security forbids setting it"
        if options.get("type", "") not in SELINUX_TYPES:
            yield f"{where}.seLinuxOptions.type", "Pod Security allows only the container_* types"
    windows = sc.get("windowsOptions")
    if isinstance(windows, dict) and windows.get("hostProcess"):
        yield f"{where}.windowsOptions.hostProcess", "Pod Security forbids host processes"
