"""Hypothesis strategies for PhloWorkflows a user may write: valid specs (every field, any legal value) and
arbitrary JSON where a spec belongs. Shared by the property tests over the model (tests/unit) and the
server-side dry runs of what it renders (tests/integration)."""

from __future__ import annotations

import copy
import os
import string
from typing import Any

from hypothesis import strategies as st
from phlo_operator import model as m
from phlo_operator import names

# `make test` runs few examples; `make reliability` sets PHLO_PROPERTY_EXAMPLES (and the bed's count) higher.
EXAMPLES = int(os.environ.get("PHLO_PROPERTY_EXAMPLES", "100"))
BED_EXAMPLES = int(os.environ.get("PHLO_PROPERTY_BED_EXAMPLES", "15"))

Spec = dict[str, Any]
LOWER = string.ascii_lowercase + string.digits
# Free text: any character JSON can carry (no lone surrogates), control characters and newlines included.
TEXT = st.characters(exclude_categories=("Cs",))
PRINTABLE = st.characters(exclude_categories=("Cs", "Cc"))


def _label(max_size: int = 63, alphabet: str = LOWER, inner: str = LOWER + "-") -> st.SearchStrategy[str]:
    """A DNS-1123 label: alphanumeric ends, dashes inside."""
    edge = st.sampled_from(alphabet)
    middle = st.text(inner, max_size=max_size - 2)
    return st.one_of(edge, st.tuples(edge, middle, edge).map("".join))


def dns_subdomain(max_size: int = 253) -> st.SearchStrategy[str]:
    return st.lists(_label(), min_size=1, max_size=5).map(".".join).filter(lambda s: len(s) <= max_size)


def dns_label() -> st.SearchStrategy[str]:
    return _label()


def qualified_name() -> st.SearchStrategy[str]:
    """An annotation or label key: [DNS subdomain/]name, name <= 63 characters."""
    name = _label(
        alphabet=string.ascii_letters + string.digits, inner=string.ascii_letters + string.digits + "-_."
    )
    return st.one_of(name, st.tuples(dns_subdomain(), name).map("/".join))


def label_value() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""), _label(alphabet=string.ascii_letters + string.digits, inner=string.ascii_letters + "-_.")
    )


def image() -> st.SearchStrategy[str]:
    component = st.tuples(
        st.text(LOWER, min_size=1, max_size=8),
        st.sampled_from(["", ".", "_", "__", "-", "--"]),
        st.text(LOWER, min_size=1, max_size=8),
    ).map(lambda t: t[0] + (t[1] + t[2] if t[1] else ""))
    path = st.lists(component, min_size=1, max_size=3).map("/".join)
    registry = st.one_of(
        st.just(""),
        st.tuples(dns_subdomain(60), st.sampled_from(["", ":5000"])).map(lambda t: f"{t[0]}{t[1]}/"),
        st.just("localhost:5000/"),
        st.just("[::1]:5000/"),
    )
    tag = st.one_of(
        st.just(""), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True).map(":".__add__)
    )
    digest = st.one_of(
        st.just(""), st.text("0123456789abcdef", min_size=64, max_size=64).map("@sha256:".__add__)
    )
    return st.tuples(registry, path, tag, digest).map("".join).filter(lambda s: len(s) <= 1024)


def absolute_path() -> st.SearchStrategy[str]:
    return st.text(PRINTABLE, max_size=40).map("/".__add__)


def annotations() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(qualified_name(), st.text(TEXT, max_size=40), max_size=3)


def quantity() -> st.SearchStrategy[tuple[int | str, float]]:
    """(quantity as written, its value) for cpu/memory-like resources."""
    whole = st.integers(1, 4096)
    suffix = st.sampled_from([("", 1), ("m", 1e-3), ("k", 1e3), ("Mi", 2**20), ("Gi", 2**30), ("M", 1e6)])
    as_string = st.tuples(whole, suffix).map(lambda t: (f"{t[0]}{t[1][0]}", t[0] * t[1][1]))
    return st.one_of(whole.map(lambda n: (n, float(n))), as_string)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    """Requests within limits; hugepages (whole pages, with cpu or memory) and extended resources (whole) with
    requests equal to limits, as Kubernetes wants them."""
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["cpu", "memory", "ephemeral-storage"]), unique=True)):
        request = draw(quantity())
        limit = draw(st.one_of(st.none(), quantity().filter(lambda q, r=request: q[1] >= r[1])))
        if draw(st.booleans()):
            requests[name] = request[0]
        if limit is not None:
            limits[name] = limit[0]
    fixed = {
        "hugepages-2Mi": st.integers(1, 8).map(lambda n: f"{2 * n}Mi"),
        "nvidia.com/gpu": st.integers(1, 8),
        "example.com/dongle": st.integers(1, 8).map(str),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fixed)), unique=True, max_size=2)):
        limits[name] = draw(fixed[name])
        if draw(st.booleans()):
            requests[name] = limits[name]
    if "hugepages-2Mi" in limits and not {"cpu", "memory"} & {*limits, *requests}:
        limits["memory"] = "1Gi"
    return {k: v for k, v in (("limits", limits), ("requests", requests)) if v}


ENV_NAME = st.from_regex(r"[-._a-zA-Z][-._a-zA-Z0-9]{0,30}", fullmatch=True).filter(
    lambda n: n not in m.RESERVED_ENV
)


# A Secret's or ConfigMap's key; the API server refuses '.' and keys starting with '..' (the dry-run property
# found both).
CONFIG_KEY = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(
    lambda k: k != "." and not k.startswith("..")
)


def value_from() -> st.SearchStrategy[dict[str, Any]]:
    selector = st.fixed_dictionaries(
        {"name": dns_subdomain(60), "key": CONFIG_KEY},
        optional={"optional": st.booleans()},
    )
    field = st.one_of(
        st.sampled_from(sorted(m._FIELD_PATHS)),
        st.tuples(st.sampled_from(["labels", "annotations"]), qualified_name()).map(
            lambda t: f"metadata.{t[0]}['{t[1]}']"
        ),
    )
    resource = st.tuples(
        st.sampled_from(["limits", "requests"]), st.sampled_from(["cpu", "memory", "ephemeral-storage"])
    ).map(".".join)
    resource_ref = resource.flatmap(
        lambda r: st.fixed_dictionaries(
            {"resource": st.just(r)},
            optional={
                "divisor": st.sampled_from(m._CPU_DIVISORS if r.endswith(".cpu") else m._BYTE_DIVISORS),
                "containerName": dns_label(),
            },
        )
    )
    return st.one_of(
        selector.map(lambda s: {"secretKeyRef": s}),
        selector.map(lambda s: {"configMapKeyRef": s}),
        st.fixed_dictionaries({"fieldPath": field}, optional={"apiVersion": st.just("v1")}).map(
            lambda f: {"fieldRef": f}
        ),
        resource_ref.map(lambda r: {"resourceFieldRef": r}),
    )


def env() -> st.SearchStrategy[list[dict[str, Any]]]:
    item = st.tuples(
        ENV_NAME,
        st.one_of(
            st.text(TEXT, max_size=60).map(lambda v: ("value", v)),
            value_from().map(lambda v: ("valueFrom", v)),
        ),
    )
    return st.lists(item, max_size=4, unique_by=lambda t: t[0]).map(
        lambda items: [{"name": name, source[0]: source[1]} for name, source in items]
    )


def env_from() -> st.SearchStrategy[list[dict[str, Any]]]:
    ref = st.fixed_dictionaries({"name": dns_subdomain(60)}, optional={"optional": st.booleans()})
    source = st.one_of(ref.map(lambda r: {"configMapRef": r}), ref.map(lambda r: {"secretRef": r}))
    prefix = st.from_regex(r"[-._a-zA-Z][-._a-zA-Z0-9]{0,10}", fullmatch=True)
    return st.lists(st.tuples(source, st.one_of(st.none(), prefix)), max_size=2).map(
        lambda items: [{**s, **({"prefix": p} if p else {})} for s, p in items]
    )


@st.composite
def toleration(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    operator = draw(st.sampled_from([None, "Exists", "Equal"]))
    key = draw(st.one_of(st.none(), qualified_name()))
    if key is None and operator != "Exists":
        operator = "Exists"
    if operator:
        out["operator"] = operator
    if key is not None:
        out["key"] = key
    if operator != "Exists" and draw(st.booleans()):
        out["value"] = draw(label_value())
    effect = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
    if effect:
        out["effect"] = effect
    if effect == "NoExecute" and draw(st.booleans()):
        out["tolerationSeconds"] = draw(st.integers(-(2**63), 2**63 - 1))
    return out


# Deep-copied per example: mangled_specs edits what it draws in place.
AFFINITY = st.sampled_from(
    [
        None,
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}
                    ]
                }
            }
        },
        {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": "x"}},
                        },
                    }
                ]
            }
        },
    ]
).map(copy.deepcopy)


def pod_overrides(container: str) -> st.SearchStrategy[dict[str, Any]]:
    """Fragments the operator accepts: a volume mounted into the component's container, a sidecar, pod
    labels and annotations, security-context fields that stay within Pod Security restricted."""
    volume = {"name": "extra", "configMap": {"name": "extra-files", "optional": True}}
    mount = {"name": "extra", "mountPath": "/etc/extra", "readOnly": True}
    return st.sampled_from(
        [
            {"spec": {"volumes": [volume], "containers": [{"name": container, "volumeMounts": [mount]}]}},
            {"spec": {"initContainers": [{"name": "wait", "image": "busybox:1", "command": ["true"]}]}},
            {
                "spec": {
                    "containers": [
                        {
                            "name": "proxy",
                            "image": "proxy:1",
                            "volumeMounts": [{"name": "tmp", "mountPath": "/t"}],
                        }
                    ]
                }
            },
            {"metadata": {"labels": {"example.com/tier": "gold"}, "annotations": {"example.com/x": "y"}}},
            {
                "spec": {
                    "securityContext": {"runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000},
                    "containers": [
                        {
                            "name": container,
                            "securityContext": {
                                "readOnlyRootFilesystem": False,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                            },
                            "env": [{"name": "EXTRA", "value": "1"}],
                        }
                    ],
                }
            },
        ]
    ).map(copy.deepcopy)


def pod_settings(container: str) -> st.SearchStrategy[dict[str, Any]]:
    """A component's own pod settings (over the spec-level ones)."""
    return _optional(
        env=env(),
        envFrom=env_from(),
        nodeSelector=st.dictionaries(qualified_name(), label_value(), max_size=2),
        tolerations=st.lists(toleration(), max_size=2),
        affinity=AFFINITY.filter(lambda a: a is not None),
        labels=st.dictionaries(qualified_name(), label_value(), max_size=2).filter(
            lambda d: not any(k.startswith("app.kubernetes.io/") for k in d)
        ),
        priorityClassName=dns_subdomain(60),
        podOverrides=pod_overrides(container),
    )


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


@st.composite
def storage(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        postgres: dict[str, Any] = {"secretName": draw(dns_subdomain(60))}
        if draw(st.booleans()):
            postgres["managed"] = False
        return {"postgres": postgres}
    return {
        "postgres": draw(
            _optional(
                managed=st.just(True),
                deletionPolicy=st.sampled_from(["Retain", "Delete"]),
                image=image(),
                storageSize=quantity().map(lambda q: str(q[0])).filter(lambda s: not s.endswith("m")),
                storageClassName=dns_subdomain(60),
                resources=resources(),
            )
        )
    }


def tag_limit() -> st.SearchStrategy[dict[str, Any]]:
    base = {"key": st.text(min_size=1, max_size=30), "limit": st.integers(0, m.INT32_MAX)}
    return st.one_of(
        st.fixed_dictionaries(base, optional={"value": st.text(max_size=30)}),
        st.fixed_dictionaries({**base, "applyLimitPerUniqueValue": st.booleans()}),
    )


def tick_days() -> st.SearchStrategy[dict[str, Any]]:
    days = st.integers(-1, m.INT32_MAX)
    return _optional(started=days, skipped=days, success=days, failure=days)


# dagster.yaml additions Dagster accepts (whatever the typed settings beside them).
INSTANCE_CONFIGS: list[dict[str, Any]] = [
    {},
    {"telemetry": None},
    {"run_monitoring": {"poll_interval_seconds": 10, "max_resume_run_attempts": 0}},
    {"sensors": {"use_threads": True, "num_workers": 4}, "schedules": {"use_threads": True}},
    {"run_coordinator": {"config": {"dequeue_interval_seconds": 2}}},
    {"code_servers": {"reload_timeout": 120}, "python_logs": {"python_log_level": "INFO"}},
]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """A spec the operator must accept: every field optional, any legal value."""
    web_port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    metrics = draw(
        _optional(
            enabled=st.booleans(),
            port=st.integers(1, 65535),
            serviceMonitor=_optional(
                enabled=st.booleans(), interval=st.from_regex(r"[0-9]{1,3}(ms|s|m|h)", fullmatch=True)
            ),
        )
    )
    enabled = metrics.get("enabled", True)
    if not enabled and (metrics.get("serviceMonitor") or {}).get("enabled"):
        metrics["serviceMonitor"]["enabled"] = False
    if enabled and metrics.get("port", m.DEFAULT_METRICS_SERVICE_PORT) == (web_port or 3000):
        metrics["port"] = 1 + (web_port or 3000) % 65535
    spec: Spec = {"image": draw(image())}
    spec.update(
        draw(
            _optional(
                imagePullPolicy=st.sampled_from(["Always", "IfNotPresent", "Never"]),
                workflows=_optional(path=absolute_path()),
                dbt=_optional(
                    enabled=st.booleans(),
                    projectDir=absolute_path(),
                    profilesDir=absolute_path(),
                    target=st.text(
                        st.characters(exclude_categories=("Cs", "Cc", "Zs")), min_size=1, max_size=20
                    ).filter(lambda t: not any(c.isspace() for c in t)),
                    podAnnotations=annotations(),
                    resources=resources(),
                ),
                daemon=_optional(resources=resources(), podAnnotations=annotations()),
                codeServer=_optional(
                    image=image(),
                    replicas=st.integers(0, m.INT32_MAX),
                    port=st.integers(1, 65535),
                    resources=resources(),
                    podAnnotations=annotations(),
                ),
                storage=storage(),
                runLauncher=_optional(namespace=dns_label(), jobTTLSeconds=st.integers(0, m.INT32_MAX)),
                env=env(),
                envFrom=env_from(),
                nodeSelector=st.dictionaries(qualified_name(), label_value(), max_size=3),
                tolerations=st.lists(toleration(), max_size=3),
                affinity=AFFINITY.filter(lambda a: a is not None),
                serviceAccountName=dns_subdomain(60),
                suspend=st.booleans(),
                runCoordinator=_optional(
                    maxConcurrentRuns=st.integers(-1, m.INT32_MAX),
                    tagConcurrencyLimits=st.lists(tag_limit(), max_size=3),
                ),
                runRetries=_optional(
                    maxRetries=st.integers(0, m.INT32_MAX), retryOnAssetOrOpFailure=st.booleans()
                ),
                retention=_optional(schedule=tick_days(), sensor=tick_days(), autoMaterialize=tick_days()),
                concurrency=_optional(
                    pools=_optional(
                        defaultLimit=st.integers(0, 1000), granularity=st.sampled_from(["run", "op"])
                    )
                ),
                instanceConfig=st.sampled_from(INSTANCE_CONFIGS),
            )
        )
    )
    webserver = draw(
        _optional(
            replicas=st.integers(0, m.INT32_MAX),
            resources=resources(),
            serviceType=st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
            podAnnotations=annotations(),
            readOnly=_optional(enabled=st.booleans(), replicas=st.integers(0, m.INT32_MAX)),
            pathPrefix=st.lists(
                st.from_regex(r"[-A-Za-z0-9._~]{1,12}", fullmatch=True), min_size=1, max_size=3
            ).map(lambda parts: "/" + "/".join(parts)),
        )
    )
    if web_port is not None:
        webserver["port"] = web_port
    if webserver:
        spec["webserver"] = webserver
    if metrics:
        spec["metrics"] = metrics
    for field, container in (
        ("webserver", "webserver"),
        ("daemon", "daemon"),
        ("codeServer", "code-server"),
        ("dbt", "dbt-compile"),
    ):
        own = draw(pod_settings(container))
        if own:
            spec[field] = {**spec.get(field, {}), **own}
    runs = draw(pod_settings("dagster"))
    runs.update(draw(_optional(resources=resources(), podAnnotations=annotations())))
    if runs:
        spec["runLauncher"] = {**spec.get("runLauncher", {}), "runs": runs}
    host = st.tuples(st.booleans(), dns_subdomain(60)).map(lambda t: ("*." if t[0] else "") + t[1])
    ingress = draw(
        _optional(
            enabled=st.booleans(),
            className=dns_subdomain(60),
            host=host,
            tls=_optional(secretName=dns_subdomain(60)),
            annotations=annotations(),
        )
    )
    if ingress.get("tls") == {}:
        del ingress["tls"]  # secretName is required
    if ingress:
        spec["ingress"] = ingress
    parent = st.fixed_dictionaries(
        {"name": dns_subdomain(60)},
        optional={"namespace": dns_label(), "sectionName": dns_label(), "port": st.integers(1, 65535)},
    )
    route = draw(
        _optional(
            # one entry per parent: entries of one parent must differ in sectionName or port (see the corpus)
            parentRefs=st.lists(parent, min_size=1, max_size=3, unique_by=lambda p: p["name"]),
            hostnames=st.lists(host, max_size=3),
            enabled=st.booleans(),
        )
    )
    if route.get("enabled") and not route.get("parentRefs"):
        route["enabled"] = False
    if route:
        spec["httpRoute"] = route
    if draw(st.booleans()):
        taken = {
            spec.get("webserver", {}).get("port", 3000),
            metrics.get("port", m.DEFAULT_METRICS_SERVICE_PORT),
        }
        port = draw(st.integers(1, 65535).filter(lambda p: p not in taken))
        spec["auth"] = {
            "enabled": True,
            "secretName": draw(dns_subdomain(60)),
            "issuerUrl": "https://login.example.com/realms/data",
            "emailDomains": draw(
                st.lists(st.sampled_from(["*", "example.com", "data.example.org"]), min_size=1, max_size=3)
            ),
            "extraArgs": draw(
                st.lists(st.sampled_from(["--cookie-expire=8h", "--allowed-group=data"]), max_size=2)
            ),
            "port": port,
        }
    s3 = draw(
        _optional(
            prefix=st.from_regex(r"[a-z0-9/_.-]{1,20}", fullmatch=True),
            endpointUrl=st.sampled_from(["http://minio.storage:9000", "https://s3.example.com"]),
            region=st.sampled_from(["us-east-1", "eu-west-1"]),
            secretName=dns_subdomain(60),
        )
    )
    if draw(st.booleans()):
        spec["computeLogs"] = {"s3": {"bucket": "dagster-logs", **s3}}
    pull = draw(st.lists(dns_subdomain(60), max_size=3, unique=True))
    if pull:
        spec["imagePullSecrets"] = [{"name": n} for n in pull]
    if "serviceAccountName" not in spec and draw(st.booleans()):
        spec["serviceAccount"] = {"annotations": draw(annotations())}
    if draw(st.booleans()):
        spec = _as_locations(draw, spec)
    return spec


def _as_locations(draw: st.DrawFn, spec: Spec) -> Spec:
    """The same spec with its location settings under spec.codeLocations, and up to two more locations."""
    server = spec.pop("codeServer", {})
    if "image" in server:
        spec["codeServer"] = {"image": server.pop("image")}
    first = {**server, **{field: spec.pop(field) for field in ("workflows", "dbt") if field in spec}}
    more = st.fixed_dictionaries(
        {},
        optional={
            "image": image(),
            "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
            "workflows": _optional(path=absolute_path()),
            "dbt": _optional(enabled=st.booleans(), projectDir=absolute_path()),
            "replicas": st.integers(0, 3),
            "port": st.integers(1, 65535),
            "env": env(),
        },
    )
    locations = [first, *draw(st.lists(more, max_size=2))]
    labels = draw(
        st.lists(
            dns_label(), min_size=len(locations), max_size=len(locations), unique_by=names.location_suffix
        )
    )
    spec["codeLocations"] = [{"name": name, **loc} for name, loc in zip(labels, locations, strict=True)]
    return spec


def workflow_names() -> st.SearchStrategy[str]:
    """Any legal PhloWorkflow name: a DNS subdomain, dots and leading digits included."""
    return dns_subdomain()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(TEXT, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "image",
    "workflows",
    "dbt",
    "webserver",
    "daemon",
    "codeServer",
    "storage",
    "runLauncher",
    "env",
    "envFrom",
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "metrics",
    "ingress",
    "httpRoute",
    "auth",
    "computeLogs",
    "suspend",
    "runCoordinator",
    "runRetries",
    "retention",
    "concurrency",
    "instanceConfig",
]


@st.composite
def mangled_specs(draw: st.DrawFn) -> Any:
    """A valid spec with one field (at any depth) replaced by arbitrary JSON, or arbitrary JSON outright."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    spec = copy.deepcopy(draw(specs()))
    node: Any = spec
    path = [draw(st.sampled_from(FIELDS))]
    while isinstance(node.get(path[-1]), dict) and node[path[-1]] and draw(st.booleans()):
        node = node[path[-1]]
        path.append(draw(st.sampled_from(sorted(node))))
    node[path[-1]] = draw(JSON)
    return spec
