"""The PrometheusRule helm renders holds exactly the rules of phlo_operator.chart.alerts, with the values.

tests/integration/test_alert_rules.py runs promtool's unit tests on those rules; this test proves they are the
ones the chart installs, with the defaults and with every threshold changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phlo_operator.chart import alerts
from phlo_operator.chart.values import AlertThresholds, PrometheusRule

from tests.helm_chart import ALL_FEATURES, one, template
from tests.promtool import check_rules

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # helm

NS = "phlo"
OPERATOR_JOB = "phlo-dagster-metrics"  # release "phlo-dagster" contains the chart name: no prefix


def rendered(tmp_path: Path, rule_values: dict[str, Any]) -> list[dict[str, Any]]:
    values = {**ALL_FEATURES, "prometheusRule": {"enabled": True, **rule_values}}
    groups: list[dict[str, Any]] = one(template(tmp_path, values, namespace=NS), "PrometheusRule")["spec"][
        "groups"
    ]
    return groups


def test_helm_renders_the_tested_rules(tmp_path: Path) -> None:
    groups = rendered(tmp_path, {})
    assert groups == alerts.rule_groups(OPERATOR_JOB, NS)
    assert f"{len(alerts.ALERT_NAMES)} rules found" in check_rules(tmp_path, groups)


def test_every_value_reaches_the_rules(tmp_path: Path) -> None:
    """Mutation (2026-12-06): a fixed `for: 5m` in place of $t.webserverDownFor in the template fails here."""
    thresholds = {
        key: (value.replace("m", "1m", 1) if isinstance(value, str) else value + 7)
        for key, value in AlertThresholds().model_dump(by_alias=True).items()
    }
    changed = {"severity": "page", "webserverJob": "dagster-.*", "thresholds": thresholds}
    expected = alerts.rule_groups(
        OPERATOR_JOB, NS, PrometheusRule.model_validate({"enabled": True, **changed})
    )
    assert rendered(tmp_path, changed) == expected
