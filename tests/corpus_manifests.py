"""The bad-input corpus (tests/corpus/*.yaml): each file is one case, a PhloWorkflow (and the Secrets it
needs) under a header saying what must happen to it.

    # why: what the case is about (any number of lines)
    # expect: refused | degraded | ready
    # reason: the Degraded condition's reason (degraded only)
    # message: a substring of the API server's refusal or of the Degraded message (any number)
    # apply: create      (optional: `kubectl create`, for objects too large for apply's annotation)
    # fill: N C          (optional: @FILL@ in the text stands for N copies of the character C)
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent / "corpus"
OUTCOMES = ("refused", "degraded", "ready")
FILL = "@FILL@"


@dataclasses.dataclass(frozen=True)
class Case:
    file: str
    why: str
    expect: str
    reason: str | None
    messages: tuple[str, ...]
    verb: str  # apply | create
    text: str  # the manifests, filled in

    @functools.cached_property
    def documents(self) -> list[dict[str, Any]]:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the 1 MiB cases in milliseconds
        return [d for d in yaml.load_all(self.text, Loader=loader) if d]

    @property
    def workflow(self) -> dict[str, Any]:
        return next(d for d in self.documents if d.get("kind") == "PhloWorkflow")

    @property
    def name(self) -> str:
        return str(self.workflow["metadata"]["name"])


def load(path: Path) -> Case:
    """One case; a malformed header is an error naming the file and the line."""
    text = path.read_text()
    header: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if not sep or key not in ("why", "expect", "reason", "message", "apply", "fill"):
            raise ValueError(f"{path.name}:{number}: not a header line ({line!r})")
        header.setdefault(key, []).append(value.strip())
    expect = (header.get("expect") or [""])[0]
    if expect not in OUTCOMES or len(header.get("expect", [])) != 1:
        raise ValueError(f"{path.name}: needs one `# expect:` of {', '.join(OUTCOMES)}")
    reason = header["reason"][0] if header.get("reason") else None
    if (expect == "degraded") != (reason is not None):
        raise ValueError(f"{path.name}: `# reason:` goes with `# expect: degraded`, and only there")
    if expect != "ready" and not header.get("message"):
        raise ValueError(f"{path.name}: a refused or degraded case names a `# message:` substring")
    if not header.get("why"):
        raise ValueError(f"{path.name}: needs a `# why:` line")
    for spec in header.get("fill", []):
        count, char = spec.split()
        text = text.replace(FILL, char * int(count))
    if FILL in text:
        raise ValueError(f"{path.name}: {FILL} without a `# fill:` line")
    return Case(
        file=path.name,
        why=" ".join(header["why"]),
        expect=expect,
        reason=reason,
        messages=tuple(header.get("message", [])),
        verb=(header.get("apply") or ["apply"])[0],
        text=text,
    )


def cases() -> list[Case]:
    return [load(p) for p in sorted(CORPUS.glob("*.yaml"))]
