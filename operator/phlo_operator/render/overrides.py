"""podOverrides: a PodTemplateSpec fragment merged into a rendered pod template with strategic-merge rules
(the fragment was judged by the model; the merged pod is judged here, where the rendered parts are known)."""

from __future__ import annotations

import copy
from typing import Any

from phlo_operator.model import InvalidSpec
from phlo_operator.pod_fragment import CONTAINER_LISTS, MERGE_KEYS

# A volume's source is replaced whole when an override names the volume (Kubernetes' retainKeys): an
# emptyDir overridden by a persistentVolumeClaim must not keep both.
RETAIN_KEYS = frozenset({"volumes"})


def merge(base: Any, patch: Any, new_container: dict[str, Any] | None = None, field: str = "") -> Any:
    """Strategic merge of `patch` onto `base`, neither modified: maps merged key by key (null removes a
    key), the lists of MERGE_KEYS merged item by item (new items appended in the patch's order), other lists
    and scalars replaced. A container the base does not have starts from `new_container`."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, new_container, key)
            else:
                out[key] = merge(_start(key, new_container), value, new_container, key)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        return _merge_list(base, patch, MERGE_KEYS[field], field, new_container)
    if isinstance(patch, list) and field in CONTAINER_LISTS and new_container is not None:
        return _merge_list([], patch, "name", field, new_container)
    return _without_nulls(copy.deepcopy(patch))


def _start(field: str, new_container: dict[str, Any] | None) -> Any:
    """What a field absent from the base merges onto: nothing, except for a container list."""
    return [] if field in CONTAINER_LISTS and new_container is not None else None


def _merge_list(
    base: list[Any], patch: list[Any], key: str, field: str, new_container: dict[str, Any] | None
) -> list[Any]:
    out = copy.deepcopy(base)
    index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, dict)}
    for item in patch:
        if not isinstance(item, dict) or item.get(key) is None:
            out.append(_without_nulls(copy.deepcopy(item)))  # the model refuses these; kept for the record
            continue
        if item[key] in index:
            i = index[item[key]]
            if field in RETAIN_KEYS:
                out[i] = {
                    k: merge(out[i].get(k), v, new_container, k) for k, v in item.items() if v is not None
                }
            else:
                out[i] = merge(out[i], item, new_container, field)
        else:
            start = copy.deepcopy(new_container) if field in CONTAINER_LISTS and new_container else {}
            index[item[key]] = len(out)
            out.append(merge(start, item, new_container, field))
    return out


def _without_nulls(value: Any) -> Any:
    """A replaced value keeps no null (a null only means: remove this key)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def apply(
    template: dict[str, Any], overrides: dict[str, Any] | None, where: str, new_container: dict[str, Any]
) -> dict[str, Any]:
    """The pod template with the overrides merged in, judged; `where` names the field (spec.webserver)."""
    if not overrides:
        return template
    merged: dict[str, Any] = merge(template, overrides, new_container)
    problems = check_pod(merged.get("spec") or {}, overrides.get("spec") or {})
    if problems:
        raise InvalidSpec("; ".join(f"{where}.podOverrides.{path}: {msg}" for path, msg in problems))
    return merged


def check_pod(pod: dict[str, Any], patch: dict[str, Any]) -> list[tuple[str, str]]:
    """What only the merged pod shows: a mount of a volume the pod does not have, a container name used
    twice. Paths point into the override (`patch`, a PodSpec fragment) where it caused the problem."""
    problems = []
    volumes = {v.get("name") for v in pod.get("volumes") or [] if isinstance(v, dict)}
    for field in CONTAINER_LISTS:
        for i, ctr in enumerate(patch.get(field) or []):
            if not isinstance(ctr, dict):
                continue
            for j, mount in enumerate(ctr.get("volumeMounts") or []):
                if isinstance(mount, dict) and mount.get("name") not in volumes:
                    problems.append(
                        (
                            f"spec.{field}[{i}].volumeMounts[{j}].name",
                            f"no volume {mount.get('name')!r} in the pod (add it to spec.volumes)",
                        )
                    )
    names = [c.get("name") for f in CONTAINER_LISTS for c in pod.get(f) or [] if isinstance(c, dict)]
    for field in CONTAINER_LISTS:
        for i, ctr in enumerate(patch.get(field) or []):
            if isinstance(ctr, dict) and names.count(ctr.get("name")) > 1:
                problems.append(
                    (f"spec.{field}[{i}].name", f"{ctr.get('name')!r} names another container of the pod")
                )
    return problems
