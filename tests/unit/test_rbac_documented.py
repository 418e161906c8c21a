"""The operator's RBAC (rbac.py, which the chart renders) equals the Permissions table of docs/operator.md:
a verb added on either side without the other fails here. tests/integration/test_rbac_documented.py checks
the same table against `kubectl auth can-i --list` for the chart's ServiceAccount."""

from __future__ import annotations

import pytest
from phlo_operator import rbac

from tests import rbac_documented

pytestmark = pytest.mark.unit


def test_every_declared_permission_is_documented_and_nothing_more() -> None:
    doc, code = rbac_documented.documented(), rbac_documented.declared()
    assert sorted(code - doc) == [], "granted in rbac.py but not in docs/operator.md's Permissions table"
    assert sorted(doc - code) == [], "in docs/operator.md's Permissions table but not granted by rbac.py"


def test_a_verb_added_without_the_doc_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation, run every time: one more verb in rbac.py and the comparison above sees it."""
    rules = [dict(rule) for rule in rbac.RULES]
    rules[0] = {**rules[0], "verbs": [*rules[0]["verbs"], "delete"]}
    monkeypatch.setattr(rbac, "RULES", rules)
    extra = rbac_documented.declared() - rbac_documented.documented()
    assert extra == {("namespace", "phlo.dev", "phloworkflows", "delete")}


def test_a_malformed_row_is_refused() -> None:
    text = f"{rbac_documented.HEADER}\n|---|---|---|---|---|\n| everywhere | core | `pods` | get | x |\n"
    with pytest.raises(ValueError, match="malformed Permissions row"):
        rbac_documented.documented(text)
