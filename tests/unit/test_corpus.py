"""The bad-input corpus offline: its headers are well formed, and the operator's own model agrees with each
outcome it can judge without a cluster. tests/integration/test_corpus.py runs the corpus on the bed."""

from __future__ import annotations

import pytest
from phlo_operator import model as m
from phlo_operator import vocabulary as v
from phlo_operator.render import Workflow, render_all

from tests import corpus_manifests
from tests.corpus_manifests import Case

pytestmark = pytest.mark.unit
CASES = corpus_manifests.cases()
# Refused by the API server before the spec is looked at (metadata, the object's top level), or a string
# where a boolean belongs, which pydantic's lax mode would read: the operator never sees these.
SERVER_ONLY = {
    "name-254.yaml",
    "name-unicode.yaml",
    "name-uppercase.yaml",
    "unknown-metadata.yaml",
    "unknown-root.yaml",
    "type-dbt-enabled-string.yaml",
    "type-suspend-string.yaml",
}


def _ids(cases: list[Case]) -> list[str]:
    return [c.file.removesuffix(".yaml") for c in cases]


def test_the_corpus_is_large_and_covers_every_outcome() -> None:
    outcomes = {o: sum(c.expect == o for c in CASES) for o in corpus_manifests.OUTCOMES}
    assert len(CASES) >= 60 and all(outcomes.values()), outcomes
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "two cases share a PhloWorkflow name (they share a namespace)"
    assert all(len([d for d in c.documents if d.get("kind") == "PhloWorkflow"]) == 1 for c in CASES)
    reasons = {c.reason for c in CASES if c.reason}
    assert reasons <= set(v.REASONS), reasons - set(v.REASONS)


def test_a_malformed_header_is_refused_with_the_file_named(tmp_path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("# why: w\n# expect: degraded\n# message: m\nkind: PhloWorkflow\n")
    with pytest.raises(ValueError, match=r"x.yaml: `# reason:` goes with"):
        corpus_manifests.load(bad)
    bad.write_text("# why: w\n# expected: ready\nkind: PhloWorkflow\n")
    with pytest.raises(ValueError, match=r"x.yaml:2: not a header line"):
        corpus_manifests.load(bad)


def test_fill_expands_to_the_size_named() -> None:
    case = corpus_manifests.load(corpus_manifests.CORPUS / "hostile-image-1mib.yaml")
    assert len(case.workflow["spec"]["image"]) == len("phlo-dagster:") + 1024 * 1024


INVALID = [c for c in CASES if c.reason == v.INVALID_SPEC]


@pytest.mark.parametrize("case", INVALID, ids=_ids(INVALID))
def test_operator_judged_cases_are_invalid_with_the_message(case: Case) -> None:
    """As the reconciler judges: the spec, then the render (a podOverrides merge is judged there)."""
    with pytest.raises(m.InvalidSpec) as raised:
        spec = m.parse_spec(case.workflow["spec"])
        render_all(Workflow(case.name, "corpus", "uid", spec))
    for part in case.messages:
        assert part in str(raised.value)


ACCEPTED = [
    c for c in CASES if c.expect == "ready" or (c.expect == "degraded" and c.reason != v.INVALID_SPEC)
]


@pytest.mark.parametrize("case", ACCEPTED, ids=_ids(ACCEPTED))
def test_cases_the_cluster_judges_pass_the_model(case: Case) -> None:
    m.parse_spec(case.workflow["spec"])


REFUSED = [c for c in CASES if c.expect == "refused" and c.file not in SERVER_ONLY]


@pytest.mark.parametrize("case", REFUSED, ids=_ids(REFUSED))
def test_the_model_refuses_what_the_api_server_refuses(case: Case) -> None:
    """Defence in depth: with an older CRD installed (or none), the operator still refuses these."""
    spec = case.workflow.get("spec")
    if not isinstance(spec, dict):
        return  # the operator reads a missing or non-object spec as {} and refuses it: spec.image
    with pytest.raises(m.InvalidSpec):
        m.parse_spec(spec)
