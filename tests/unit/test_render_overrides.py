"""render/overrides.merge: strategic-merge rules, as examples and as properties over arbitrary fragments."""

from __future__ import annotations

import copy
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phlo_operator.model import InvalidSpec
from phlo_operator.render.overrides import apply, merge

from tests import spec_strategies as ss

pytestmark = pytest.mark.unit

HARDENED = {"securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}


def base_pod() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}, "annotations": {"a": "1"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "img:1",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                    "args": ["x", "y"],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "nodeSelector": {"pool": "a"},
        },
    }


def test_containers_merge_by_name_and_new_ones_append_hardened() -> None:
    patch = {
        "spec": {
            "containers": [
                {"name": "sidecar", "image": "proxy:1"},
                {"name": "main", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]},
            ]
        }
    }
    out = merge(base_pod(), patch, HARDENED)
    main, sidecar = out["spec"]["containers"]
    assert main["name"] == "main" and main["image"] == "img:1"
    assert main["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert sidecar == {"name": "sidecar", "image": "proxy:1", **HARDENED}


def test_mounts_merge_by_mount_path_volumes_by_name_with_retained_keys() -> None:
    patch = {
        "spec": {
            "volumes": [
                {"name": "tmp", "persistentVolumeClaim": {"claimName": "scratch"}},
                {"name": "ca", "configMap": {"name": "ca-bundle"}},
            ],
            "containers": [
                {
                    "name": "main",
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp", "readOnly": True},
                        {"name": "ca", "mountPath": "/etc/ssl/certs/ca.pem", "subPath": "ca.pem"},
                    ],
                }
            ],
        }
    }
    out = merge(base_pod(), patch, HARDENED)
    # The emptyDir is gone (one volume, one source), not merged next to the claim.
    assert out["spec"]["volumes"] == patch["spec"]["volumes"]
    mounts = out["spec"]["containers"][0]["volumeMounts"]
    assert mounts[0] == {"name": "tmp", "mountPath": "/tmp", "readOnly": True}
    assert mounts[1]["mountPath"] == "/etc/ssl/certs/ca.pem"


def test_maps_merge_scalars_and_plain_lists_replace_null_removes() -> None:
    patch = {
        "metadata": {"labels": {"team": "data"}, "annotations": {"a": None}},
        "spec": {
            "nodeSelector": {"zone": "z1"},
            "containers": [
                {"name": "main", "args": ["z"], "securityContext": {"readOnlyRootFilesystem": False}}
            ],
            "priorityClassName": "high",
        },
    }
    out = merge(base_pod(), patch, HARDENED)
    assert out["metadata"] == {"labels": {"app": "x", "team": "data"}, "annotations": {}}
    assert out["spec"]["nodeSelector"] == {"pool": "a", "zone": "z1"}
    main = out["spec"]["containers"][0]
    assert main["args"] == ["z"]
    assert main["securityContext"] == {
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": False,
    }
    assert out["spec"]["priorityClassName"] == "high"


def test_init_containers_start_hardened_where_the_base_has_none() -> None:
    out = merge(base_pod(), {"spec": {"initContainers": [{"name": "wait", "image": "busybox:1"}]}}, HARDENED)
    assert out["spec"]["initContainers"] == [{"name": "wait", "image": "busybox:1", **HARDENED}]


def test_merge_leaves_its_inputs_alone() -> None:
    base, patch = (
        base_pod(),
        {"spec": {"containers": [{"name": "main", "env": [{"name": "A", "value": "9"}]}]}},
    )
    before = copy.deepcopy((base, patch))
    merge(base, patch, HARDENED)
    assert (base, patch) == before


def test_apply_names_the_override_field_of_a_mount_without_volume() -> None:
    patch = {
        "spec": {"containers": [{"name": "main", "volumeMounts": [{"name": "nope", "mountPath": "/n"}]}]}
    }
    with pytest.raises(InvalidSpec) as raised:
        apply(base_pod(), patch, "spec.webserver", HARDENED)
    assert str(raised.value).startswith(
        "spec.webserver.podOverrides.spec.containers[0].volumeMounts[0].name: no volume 'nope'"
    )


def test_apply_refuses_a_container_name_used_twice() -> None:
    patch = {"spec": {"initContainers": [{"name": "main", "image": "x:1"}]}}
    with pytest.raises(InvalidSpec, match=r"spec\.dbt\.podOverrides\.spec\.initContainers\[0\]\.name"):
        apply(base_pod(), patch, "spec.dbt", HARDENED)


def test_no_overrides_is_the_template_itself() -> None:
    pod = base_pod()
    assert apply(pod, None, "spec.daemon", HARDENED) is pod and apply(pod, {}, "spec.daemon", HARDENED) is pod


# Properties over arbitrary JSON-like fragments.
KEYS = st.sampled_from(["a", "b", "c", "name", "image", "labels", "spec"])
SCALARS = st.one_of(st.integers(-5, 5), st.text(string.ascii_lowercase, max_size=3), st.booleans())
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.dictionaries(KEYS, inner, max_size=4), st.lists(inner, max_size=3)),
    max_leaves=12,
)
NAMED = st.lists(
    st.fixed_dictionaries({"name": st.sampled_from(["x", "y", "z"])}, optional={"v": SCALARS, "w": SCALARS}),
    max_size=4,
    unique_by=lambda d: d["name"],
)


@settings(max_examples=ss.EXAMPLES, deadline=None)
@given(base=st.dictionaries(KEYS, TREES, max_size=4), patch=st.dictionaries(KEYS, TREES, max_size=4))
def test_every_patched_map_key_wins_and_others_stay(base: dict[str, Any], patch: dict[str, Any]) -> None:
    out = merge(base, patch)
    for key, value in patch.items():
        if not (isinstance(value, dict) and isinstance(base.get(key), dict)):
            assert out[key] == value
    for key in base.keys() - patch.keys():
        assert out[key] == base[key]


@settings(max_examples=ss.EXAMPLES, deadline=None)
@given(base=st.dictionaries(KEYS, TREES, max_size=4))
def test_an_empty_patch_and_the_base_itself_change_nothing(base: dict[str, Any]) -> None:
    assert merge(base, {}) == base
    assert merge(base, base) == base


@settings(max_examples=ss.EXAMPLES, deadline=None)
@given(base=NAMED, patch=NAMED)
def test_keyed_lists_keep_one_item_per_name_base_order_first(
    base: list[dict[str, Any]], patch: list[dict[str, Any]]
) -> None:
    out = merge({"env": base}, {"env": patch})["env"]
    names = [item["name"] for item in out]
    assert len(names) == len(set(names)) == len({*[b["name"] for b in base], *[p["name"] for p in patch]})
    assert names[: len(base)] == [b["name"] for b in base]
    for item in patch:
        merged = next(o for o in out if o["name"] == item["name"])
        assert {k: merged[k] for k in item} == item  # what the patch says wins
        before = next((b for b in base if b["name"] == item["name"]), {})
        assert {k: merged[k] for k in before.keys() - item.keys()} == {
            k: before[k] for k in before.keys() - item.keys()
        }


@settings(max_examples=ss.EXAMPLES, deadline=None)
@given(base=st.dictionaries(KEYS, TREES, max_size=4), patch=st.dictionaries(KEYS, TREES, max_size=4))
def test_merging_twice_is_merging_once(base: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge(base, patch)
    assert merge(once, patch) == once
