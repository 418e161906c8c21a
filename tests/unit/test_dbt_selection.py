"""What a dbt step asks dbt to build (step_selection) and what `phlo dev`'s watch counts as a change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from phlo_dagster.dbt import DbtSelection, _Nodes, step_selection
from phlo_dagster.dev_watch import DbtWatch

pytestmark = pytest.mark.unit

A, B, C = dg.AssetKey(["a"]), dg.AssetKey(["b"]), dg.AssetKey(["c"])
CHECK_A = dg.AssetCheckKey(A, "not_null_a_id")
CHECK_B = dg.AssetCheckKey(B, "unique_b_id")
NODES = _Nodes(
    by_key={A: "model.p.a", B: "model.p.b", C: "seed.p.c"},
    by_check={CHECK_A: "test.p.not_null_a_id", CHECK_B: "test.p.unique_b_id"},
    tests={
        "test.p.not_null_a_id": frozenset({"model.p.a"}),
        "test.p.unique_b_id": frozenset({"model.p.b"}),
        "test.p.a_matches_b": frozenset({"model.p.a", "model.p.b"}),  # singular, on two models: no check
    },
    selector={
        "model.p.a": "fqn:p.a",
        "model.p.b": "fqn:p.marts.b",
        "seed.p.c": "fqn:p.c",
        "test.p.not_null_a_id": "fqn:p.not_null_a_id",
        "test.p.unique_b_id": "fqn:p.unique_b_id",
        "test.p.a_matches_b": "fqn:p.a_matches_b",
    },
)


@dataclass
class Step:
    selected_asset_keys: set[dg.AssetKey]
    selected_asset_check_keys: set[dg.AssetCheckKey] = field(default_factory=set)


def _parts(args: list[str]) -> dict[str, set[str]]:
    assert args[:2] == ["--indirect-selection", "empty"], args
    pairs = dict(zip(args[2::2], args[3::2], strict=True))
    return {flag: set(value.split()) for flag, value in pairs.items()}


def test_a_step_names_exactly_its_models_and_tests() -> None:
    """Mutation (2026-12-02): with `--indirect-selection empty` dropped, the first assertion failed."""
    args = step_selection(Step({A, B, C}, {CHECK_A, CHECK_B}), NODES, None)
    assert _parts(args) == {
        "--select": {
            "fqn:p.a",
            "fqn:p.marts.b",
            "fqn:p.c",
            "fqn:p.not_null_a_id",
            "fqn:p.unique_b_id",
            "fqn:p.a_matches_b",
        }
    }


def test_unselected_checks_are_not_run() -> None:
    assert _parts(step_selection(Step({A}), NODES, None)) == {"--select": {"fqn:p.a", "fqn:p.a_matches_b"}}


def test_a_narrowing_selection_excludes_the_rest_and_their_tests() -> None:
    """dagster-dbt adds its own --select of every model of the step: what the run config drops is excluded.

    Mutation (2026-12-02): with the --exclude left out, the "--exclude" key was missing."""
    args = step_selection(Step({A, B}, {CHECK_A, CHECK_B}), NODES, {A})
    assert _parts(args) == {
        "--select": {"fqn:p.a", "fqn:p.not_null_a_id"},
        "--exclude": {"fqn:p.marts.b", "fqn:p.unique_b_id", "fqn:p.a_matches_b"},
    }


def test_a_selection_describes_itself_by_the_names_the_user_gave() -> None:
    assert not DbtSelection()
    assert DbtSelection(select="tag:x", exclude=" b ").describe() == "--dbt-select 'tag:x' --dbt-exclude 'b'"
    named = DbtSelection(selector="n", names=("s", "e", "ops.dbt_models.config.selector"))
    assert named.describe() == "ops.dbt_models.config.selector 'n'"


def _watch(tmp_path: Path) -> DbtWatch:
    project = tmp_path / "shop"
    (project / "models").mkdir(parents=True)
    return DbtWatch(project, project, project / "target", settle_s=1.0)


def test_the_watch_counts_project_inputs_only(tmp_path: Path) -> None:
    """Mutation (2026-12-02): with note() recording every path, target/manifest.json was taken."""
    watch = _watch(tmp_path)
    shop = watch.project_dir
    ignored = ("target/manifest.json", "logs/dbt.log", "shop.duckdb", ".user.yml", "dbt_packages/x/m.sql")
    for name in ignored:
        watch.note(str(shop / name), False, 0.0)
    watch.note(str(shop / "target"), True, 0.0)
    assert watch.take(10.0) == []
    watch.note(str(shop / "models" / "new.sql"), False, 1.0)
    watch.note(str(shop / "profiles.yml"), False, 1.5)
    watch.note(str(shop / "models" / "marts"), True, 1.5)  # a folder removed or renamed
    assert watch.take(2.0) == []  # not settled yet
    assert watch.take(2.6) == [shop / "models" / "marts", shop / "models" / "new.sql", shop / "profiles.yml"]
    assert watch.take(9.0) == []
