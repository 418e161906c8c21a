"""The operator's permissions as docs/operator.md documents them (its Permissions table), and as rbac.py
declares them, each as a set of (scope, API group, resource, verb)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phlo_operator import rbac

DOC = Path(__file__).resolve().parents[1] / "docs" / "operator.md"
HEADER = "| Scope | API group | Resources | Verbs | Why |"
Grant = tuple[str, str, str, str]  # scope (namespace | cluster), API group ("" for core), resource, verb


def documented(text: str | None = None) -> set[Grant]:
    """The rows of the Permissions table, expanded; a malformed row is an error naming it."""
    lines = (text if text is not None else DOC.read_text()).splitlines()
    if HEADER not in lines:
        raise ValueError(f"{DOC.name} has no Permissions table ({HEADER})")
    grants: set[Grant] = set()
    for line in lines[lines.index(HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 5 or cells[0] not in ("namespace", "cluster") or not cells[4]:
            raise ValueError(f"malformed Permissions row: {line}")
        scope, group, resources, verbs = cells[0], cells[1].strip("`"), cells[2], cells[3]
        group = "" if group == "core" else group
        for resource in resources.split(","):
            for verb in verbs.split(","):
                grants.add((scope, group, resource.strip().strip("`"), verb.strip()))
    return grants


def declared() -> set[Grant]:
    """What rbac.py holds (and the chart renders)."""
    return _expand("namespace", rbac.RULES) | _expand("cluster", rbac.CLUSTER_RULES)


def _expand(scope: str, rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (scope, g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
