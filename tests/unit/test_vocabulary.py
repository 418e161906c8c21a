"""One home for condition types, reasons, Event reasons and component names; docs are generated from it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from phlo_operator import generate
from phlo_operator import status as st
from phlo_operator import vocabulary as v

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", [str(p) for p in generate.VOCABULARY_FILES])
def test_the_docs_vocabulary_tables_are_current(path: str) -> None:
    expected = generate.vocabulary_files(REPO)[Path(path)]
    assert (REPO / path).read_text() == expected, f"{path} is stale: run `make generate`"


def _deployment(ready: bool) -> dict[str, object]:
    n = 1 if ready else 0
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": n},
    }


DBT = [
    st.DbtObservation("Disabled"),
    st.DbtObservation("Succeeded", "j", "h", v.SUCCEEDED, "ok"),
    st.DbtObservation("Running", "j", "h", v.RUNNING, "running"),
    st.DbtObservation("Failed", "j", "h", v.FAILED, "failed"),
]


def test_every_condition_and_reason_status_computes_is_in_the_vocabulary() -> None:
    seen: set[tuple[str, str]] = set()
    locations = (None, st.Check(True, v.LOADED, "loaded"), st.Check(False, v.LOADING, "loading"))
    migrations = (
        None,
        st.Migration("True", v.UP_TO_DATE, "up to date"),
        st.Migration("Unknown", v.MIGRATING, "migrating", migrating=True),
        st.Migration("False", v.MIGRATION_FAILED, "failed"),
    )
    for dbt, ready, suspended, storage, location, migration in itertools.product(
        DBT, (True, False), (True, False), (None, "gone"), locations, migrations
    ):
        deployments = {c: _deployment(ready) for c in v.COMPONENT_CONDITIONS}
        obs = st.Observed(
            1,
            suspended=suspended,
            deployments=deployments,
            dbt=dbt,
            storage_problem=storage,
            code_location=location,
            migration=migration,
            migration_problem="failed" if migration and migration.status == "False" else None,
        )
        seen |= {(c["type"], c["reason"]) for c in st.conditions(obs)}
    seen |= {(c["type"], c["reason"]) for c in st.conditions(st.Observed(1, invalid="bad"))}
    seen |= {(c["type"], c["reason"]) for c in st.api_failure_conditions([], "HTTP 500")}
    assert {t for t, _ in seen} == set(v.CONDITIONS)
    assert {r for _, r in seen} <= set(v.REASONS)


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        v._term(dict(v.CONDITIONS), v.READY, "again")
