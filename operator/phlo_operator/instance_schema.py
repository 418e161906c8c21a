"""Checks a dagster.yaml against Dagster's own instance config schema, without importing Dagster.

The schema is Dagster's, exported by `make generate` (phlo_dagster.instance_schema) into
dagster_instance_schema.json next to this module: the config types of the instance, of the configurable
classes the operator renders, and the bounds of the rules Dagster checks outside its schema. This module
walks a value through those types the way Dagster's validation does, so what it refuses Dagster would
refuse when the webserver or the daemon load the instance. Problems name the key by its path in
Dagster's notation (root:run_coordinator:config:max_concurrent_runs).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from typing import Any

SCHEMA_FILE = "dagster_instance_schema.json"
# Dagster reads a configurable class's module dagster.x as its private dagster._x.
_PUBLIC_DAGSTER_MODULE = re.compile(r"^dagster\.([^_])")
# Instance keys that name a class (module, class, config) whose config Dagster checks when it loads it.
_CLASS_KEYS = ("run_coordinator", "run_launcher", "compute_logs")
# The run-queue settings concurrency.runs replaces (Dagster refuses both).
_RUNS_HINT = "(-1 means no limit, 0 launches nothing)"
_RUN_QUEUE_KEYS = (
    ("max_concurrent_runs",),
    ("tag_concurrency_limits",),
    ("block_op_concurrency_limited_runs", "op_concurrency_slot_buffer"),
)


@functools.cache
def schema() -> dict[str, Any]:
    text = resources.files("phlo_operator").joinpath(SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def dagster_version() -> str:
    return str(schema()["dagsterVersion"])


def max_concurrency_limit() -> int:
    return int(schema()["maxConcurrencyLimit"])


def problems(config: Mapping[str, Any]) -> list[str]:
    """Every problem Dagster would report loading this dagster.yaml, as '<path>: <what is wrong>'."""
    found = list(_instance_rules(config))
    found += _walk(schema()["root"], config, "root")
    for key in _CLASS_KEYS:
        found += _class_config(config.get(key), f"root:{key}")
    return found


def _class_config(value: Any, path: str) -> list[str]:
    """The config of a class Dagster knows (the snapshot has its schema); other classes only by shape."""
    if not isinstance(value, Mapping) or not isinstance(value.get("module"), str):
        return []
    module = _PUBLIC_DAGSTER_MODULE.sub(r"dagster._\1", value["module"])
    key = schema()["classes"].get(f"{module}.{value.get('class')}")
    if key is None:
        return []
    config = value.get("config")
    found = _walk(key, {} if config is None else config, f"{path}:config")
    if value.get("class") == "QueuedRunCoordinator" and isinstance(config, Mapping):
        runs = config.get("max_concurrent_runs")
        if isinstance(runs, int) and runs < -1:
            found.append(f"{path}:config:max_concurrent_runs: {runs} is below -1 {_RUNS_HINT}")
    return found


def _pluck(config: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(config, Mapping):
            return None
        config = config.get(part)
    return config


def _instance_rules(config: Mapping[str, Any]) -> Iterator[str]:
    """What Dagster checks about a dagster.yaml besides its schema."""
    if "run_queue" in config and "run_coordinator" in config:
        yield "root: run_queue and run_coordinator exclude each other; configure the run queue in one of them"
    split = [k for k in ("run_storage", "event_log_storage", "schedule_storage") if k in config]
    if "storage" in config and split:
        yield f"root: storage excludes {', '.join(split)}"
    elif isinstance(config.get("storage"), Mapping) and len(config["storage"]) != 1:
        yield "root:storage: exactly one of postgres, mysql, sqlite, custom"
    concurrency = config.get("concurrency")
    if not isinstance(concurrency, Mapping):
        return
    limit = max_concurrency_limit()
    if "pools" in concurrency:
        if concurrency.get("default_op_concurrency_limit") is not None:
            yield (
                "root:concurrency:default_op_concurrency_limit: excluded by concurrency.pools "
                "(use pools.default_limit)"
            )
        default = _pluck(concurrency, "pools", "default_limit")
        if isinstance(default, int) and not 0 <= default <= limit:
            yield f"root:concurrency:pools:default_limit: {default} is outside 0-{limit}"
        granularity = _pluck(concurrency, "pools", "granularity")
        if granularity and granularity not in ("run", "op"):
            yield f"root:concurrency:pools:granularity: {granularity!r} is neither 'run' nor 'op'"
    elif isinstance(concurrency.get("default_op_concurrency_limit"), int):
        default = concurrency["default_op_concurrency_limit"]
        if not 0 <= default <= limit:
            yield f"root:concurrency:default_op_concurrency_limit: {default} is outside 0-{limit}"
    if "runs" not in concurrency and "pools" not in concurrency:
        return
    queues: list[tuple[str, ...]] = [("run_queue",)]
    if _pluck(config, "run_coordinator", "class") == "QueuedRunCoordinator":
        queues.append(("run_coordinator", "config"))
    for prefix in queues:
        for keys in _RUN_QUEUE_KEYS:
            if _pluck(config, *prefix, *keys) is not None:
                where = ":".join(("root", *prefix, *keys))
                yield f"{where}: excluded by concurrency.runs/pools (set the run limits in one place)"


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SCALARS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "INT": (_is_int, "an integer"),
    "STRING": (lambda v: isinstance(v, str), "a string"),
    "BOOL": (lambda v: isinstance(v, bool), "a boolean"),
    "FLOAT": (lambda v: isinstance(v, int | float), "a number"),  # as in Dagster: ints (and bools) too
}


def _walk(key: str, value: Any, path: str) -> list[str]:
    """Problems of value against config type key, at path; the order of checks is Dagster's."""
    spec = schema()["types"][key]
    kind = spec["kind"]
    if kind == "NONEABLE":
        return [] if value is None else _walk(spec["inner"], value, path)
    if kind == "ANY":
        return []
    if value is None:
        return [f"{path}: must not be null"]
    if kind == "SCALAR":
        if spec["scalar"] is None:
            return []
        accepts, what = _SCALARS[spec["scalar"]]
        return [] if accepts(value) else [f"{path}: {_describe(value)} is not {what}"]
    if kind == "SCALAR_UNION":
        inner = spec["non_scalar_type"] if isinstance(value, dict | list) else spec["scalar_type"]
        return _walk(inner, value, path)
    if kind == "ENUM":
        if not isinstance(value, str) or value not in spec["values"]:
            return [f"{path}: {_describe(value)} is not one of {', '.join(spec['values'])}"]
        return []
    if kind == "ARRAY":
        if not isinstance(value, list):
            return [f"{path}: {_describe(value)} is not a list"]
        return [p for i, item in enumerate(value) for p in _walk(spec["inner"], item, f"{path}[{i}]")]
    if kind == "MAP":
        if not isinstance(value, dict):
            return [f"{path}: {_describe(value)} is not a mapping"]
        found = []
        for k, item in value.items():
            found += _walk(spec["key"], k, f"{path}:{k!r}:key")
            found += _walk(spec["value"], item, f"{path}:{k!r}:value")
        return found
    if kind == "SELECTOR":
        return _selector(spec, value, path)
    if kind in ("STRICT_SHAPE", "PERMISSIVE_SHAPE"):
        return _shape(spec, value, path, strict=kind == "STRICT_SHAPE")
    return [f"{path}: config type {kind} is unknown to this operator (regenerate {SCHEMA_FILE})"]


def _selector(spec: Mapping[str, Any], value: Any, path: str) -> list[str]:
    fields: dict[str, Any] = spec["fields"]
    if value == {}:
        if len(fields) > 1:
            return [f"{path}: choose one of {', '.join(sorted(fields))}"]
        only = next(iter(fields))
        return [f"{path}: {only} is required"] if fields[only]["required"] else []
    if not isinstance(value, dict):
        return [f"{path}: {_describe(value)} is not a mapping with one of {', '.join(sorted(fields))}"]
    if len(value) > 1:
        return [f"{path}: only one of {', '.join(sorted(fields))} may be set, not {', '.join(sorted(value))}"]
    ((name, item),) = value.items()
    if name not in fields:
        return [f"{path}: unexpected key {name!r} (one of {', '.join(sorted(fields))})"]
    field_type = fields[name]["type"]
    if item is None and schema()["types"][field_type]["kind"] in _WITH_FIELDS:
        item = {}
    return _walk(field_type, item, f"{path}:{name}")


_WITH_FIELDS = ("SELECTOR", "STRICT_SHAPE", "PERMISSIVE_SHAPE")


def _shape(spec: Mapping[str, Any], value: Any, path: str, strict: bool) -> list[str]:
    fields: dict[str, Any] = spec["fields"]
    aliases: dict[str, str] = spec.get("aliases") or {}
    if not isinstance(value, dict):
        return [f"{path}: {_describe(value)} is not a mapping"]
    found = []
    if strict:
        extra = sorted(set(value) - set(fields) - set(aliases.values()))
        if extra:
            allowed = ", ".join(sorted(fields))
            found.append(
                f"{path}: unexpected key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
                f" (allowed: {allowed})"
            )
    missing = [
        name
        for name, field in fields.items()
        if field["required"] and name not in value and aliases.get(name) not in value
    ]
    if missing:
        found.append(f"{path}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for name, field in fields.items():
        alias = aliases.get(name)
        if alias is not None and alias in value and name in value:
            found.append(f"{path}: set {name} or its alias {alias}, not both")
        elif name in value:
            found += _walk(field["type"], value[name], f"{path}:{name}")
        elif alias is not None and alias in value:
            found += _walk(field["type"], value[alias], f"{path}:{name}")
    return found
