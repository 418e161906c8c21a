"""Debian's promtool: `check rules` and `test rules` on files written to a temporary directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool is missing: .ci/run installs Debian's prometheus package (apt-get install prometheus)"
    )
    return path


def check_rules(tmp: Path, groups: list[dict[str, Any]]) -> str:
    """`promtool check rules` on the groups; its output (it names the number of rules found)."""
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_rule_tests(tmp: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> None:
    """`promtool test rules` with the groups as its one rule file; fails with promtool's report."""
    (tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    spec = tmp / "rules.test.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False
        )
    )
    result = subprocess.run(
        [promtool(), "test", "rules", spec.name], capture_output=True, text=True, cwd=tmp, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
