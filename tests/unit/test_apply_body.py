"""The server-side apply body carries any string a spec may hold: the API server reads it as YAML, whose
reader refuses JSON's surrogate escapes of emoji and folds raw line separators."""

from __future__ import annotations

import json

import pytest
import yaml
from phlo_operator.apply import apply_body

pytestmark = pytest.mark.unit
HOSTILE = [
    "grüß dich ✓ 🚀 \u200b zero-width",
    "second\nline\r\n\ttab",
    "\x00\x07\x1b\x7f\x85\x9f",
    "\u2028\u2029\ufeff\ufffe\uffff",
    "\U0001d518\U0001d52b\U0001d526 \U0010fffd",
    '"quoted" \\ back $(rm -rf /) `id`',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_every_string_reads_back_as_yaml_unchanged(text: str) -> None:
    """Mutation (2026-12-06): apply_body as plain json.dumps (what the client did) failed the two cases with
    characters beyond the BMP (PyYAML, like the API server, refuses the surrogate escapes). Sending \\u2028
    and \\u2029 raw did not fail it (PyYAML keeps them): they are escaped for YAML 1.1
    readers, which fold them."""
    obj = {"metadata": {"annotations": {"k": text}}, "env": [{"name": "A", "value": text}]}
    body = apply_body(obj)
    assert yaml.safe_load(body.decode()) == obj
    assert json.loads(body) == obj
    assert b"\\ud83d" not in body  # the rocket travels as UTF-8, not as surrogates
