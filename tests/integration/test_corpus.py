"""The bad-input corpus on the real API server with one operator: every manifest of tests/corpus/ is applied
into one namespace next to a good workflow, and each gets the outcome its header names (refused by the API
server with the message, or accepted and Degraded with the reason and a message naming the field, or Ready).
The operator never restarts and never logs a traceback, the good workflow stays Ready throughout, and no
Secret value reaches a status or an Event."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import corpus_manifests
from tests.corpus_manifests import Case
from tests.integration.test_operator import Operator
from tests.testbed.cluster import Testbed

pytestmark = pytest.mark.integration
GOOD = "good-quickstart.yaml"
SECRET_MARK = "corpus-password"  # every Secret value in the corpus carries it
OUTCOME_TIMEOUT = 180.0


def _submit(bed: Testbed, namespace: str, case: Case) -> str | None:
    """Send the case as a user would (`kubectl apply -f`, or create); the refusal's text, None if accepted."""
    args = ["create", "-f", "-"] if case.verb == "create" else ["apply", "-f", "-"]
    out = bed.kubectl("-n", namespace, *args, input=case.text, check=False, timeout=120)
    return (out.stderr or "refused without a message") if out.returncode else None


def _condition(cr: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (cr.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def _verdict(case: Case, cr: dict[str, Any] | None) -> str | None:
    """None when the workflow shows the case's outcome, else what it shows instead."""
    if cr is None:
        return "the PhloWorkflow is not there"
    ready, degraded = _condition(cr, "Ready"), _condition(cr, "Degraded")
    # The conditions' own observedGeneration: a pass that failed at the API keeps status.observedGeneration.
    if {ready.get("observedGeneration"), degraded.get("observedGeneration")} != {
        cr["metadata"]["generation"]
    }:
        return f"not observed yet (status: {cr.get('status')})"
    if case.expect == "ready":
        return None if ready.get("status") == "True" else f"Ready={ready}, Degraded={degraded}"
    shown = f"Ready={ready.get('status')}/{ready.get('reason')}, Degraded={degraded}"
    if (
        degraded.get("status") != "True"
        or degraded.get("reason") != case.reason
        or ready.get("status") != "False"
    ):
        return shown
    missing = [part for part in case.messages if part not in degraded.get("message", "")]
    return f"message lacks {missing}: {shown}" if missing else None


def _workflows(bed: Testbed, namespace: str) -> dict[str, dict[str, Any]]:
    items = json.loads(bed.kubectl("-n", namespace, "get", "pwf", "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: i for i in items}


def test_every_corpus_case_gets_its_outcome(
    testbed: Testbed, namespace: str, crds: None, tmp_path: Path, record_property: Any
) -> None:
    """Mutations (2026-12-06): model._env_names matching env names with `re.match` (a trailing newline
    passes) failed it: env-name-newline.yaml went ApplyFailed (the API server refused the Deployment)
    instead of InvalidSpec. Before apply_body, hostile-unicode-values.yaml was ApplyFailed ("found invalid
    Unicode character escape code": the client sent an emoji as JSON surrogates)."""
    started = time.monotonic()
    cases = corpus_manifests.cases()
    good = next(c for c in cases if c.file == GOOD)
    op = Operator(testbed, [namespace], tmp_path / "operator.log").start()
    try:
        assert _submit(testbed, namespace, good) is None
        testbed.kubectl(
            "-n", namespace, "wait", "--for=condition=Ready", f"pwf/{good.name}", "--timeout=180s"
        )
        good_since = _condition(_workflows(testbed, namespace)[good.name], "Ready")["lastTransitionTime"]

        others = [c for c in cases if c is not good]
        with ThreadPoolExecutor(4) as pool:
            sent = list(pool.map(lambda c: _submit(testbed, namespace, c), others))
        refusals = {c.file: refusal for c, refusal in zip(others, sent, strict=True)}
        problems: dict[str, str] = {}
        for case in others:
            refusal = refusals[case.file]
            if case.expect == "refused":
                if refusal is None:
                    problems[case.file] = "accepted, expected a refusal"
                else:
                    missing = [part for part in case.messages if part not in refusal]
                    if missing:
                        problems[case.file] = f"refusal lacks {missing}: {refusal.strip()[:600]}"
            elif refusal is not None:
                problems[case.file] = f"refused, expected {case.expect}: {refusal.strip()[:600]}"

        waiting = {c.file: c for c in others if c.expect != "refused" and c.file not in problems}
        deadline = time.monotonic() + OUTCOME_TIMEOUT
        last: dict[str, str] = {}
        while waiting and time.monotonic() < deadline:
            live = _workflows(testbed, namespace)
            for file, case in list(waiting.items()):
                verdict = _verdict(case, live.get(case.name))
                if verdict is None:
                    del waiting[file]
                else:
                    last[file] = verdict
            time.sleep(2)
        problems.update({file: f"after {OUTCOME_TIMEOUT:.0f}s: {last.get(file)}" for file in waiting})
        elapsed = time.monotonic() - started
        record_property("corpus_cases", len(cases))
        record_property("corpus_seconds", round(elapsed))
        assert problems == {}, "\n".join(f"{f}: {p}" for f, p in sorted(problems.items()))

        # Beside all of that: the operator never restarted or crashed, the good workflow never left Ready.
        assert op.proc is not None and op.proc.poll() is None
        assert "Traceback" not in op.log_path.read_text(errors="replace"), op.tail(80)
        live = _workflows(testbed, namespace)
        assert _condition(live[good.name], "Ready")["status"] == "True"
        assert _condition(live[good.name], "Ready")["lastTransitionTime"] == good_since
        events = testbed.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
        assert SECRET_MARK not in json.dumps([w.get("status") for w in live.values()]) + events
        outcomes = {o: sum(c.expect == o for c in cases) for o in corpus_manifests.OUTCOMES}
        print(f"corpus: {len(cases)} manifests {outcomes} in {elapsed:.0f}s")
    finally:
        op.stop()
