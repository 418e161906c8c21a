"""Existing manifests render what they rendered before: the quickstart's and the corpus' good workflows,
object for object, against tests/golden/render/ (a change there is a rollout, or a rename, on upgrade).
After a deliberate change: PHLO_UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py; review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator.model import parse_spec
from phlo_operator.render import Facts, Workflow, render_all

from tests.corpus_manifests import CORPUS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/golden/render"
MANIFESTS = [ROOT / "examples/quickstart/workflow.yaml", *sorted(CORPUS.glob("good-*.yaml"))]
# Every fact set, so every conditional object and annotation is rendered.
FACTS = Facts(
    service_monitor_api=True,
    referenced_checksums={"webserver": "w", "daemon": "d", "code-server": "c"},
)


def rendered(path: Path) -> str:
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "PhloWorkflow")
    wf = Workflow(doc["metadata"]["name"], "team", "uid-1", parse_spec(doc["spec"]), 3)
    desired = render_all(wf, FACTS)
    out: dict[str, Any] = {
        "objects": [*desired.objects, desired.code_server, desired.dbt_job],
        "absent": [list(ref) for ref in sorted(desired.absent)],
    }
    return yaml.safe_dump(json.loads(json.dumps(out)), sort_keys=True)  # no anchors for shared values


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_existing_manifests_render_the_same_objects(path: Path) -> None:
    golden = GOLDEN / f"{path.parent.name}-{path.stem}.yaml"
    text = rendered(path)
    if os.environ.get("PHLO_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: PHLO_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text(), (
        f"{path.name} renders other objects than {golden.relative_to(ROOT)}: existing workflows would roll "
        f"or rename on upgrade. If deliberate: PHLO_UPDATE_GOLDEN=1 pytest {Path(__file__).name}"
    )
