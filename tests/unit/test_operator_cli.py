"""`phlo-dagster-operator` flags: clear errors for bad input, never a traceback."""

from __future__ import annotations

import pytest
from phlo_operator.main import parse_args

pytestmark = pytest.mark.unit


def test_namespaces_repeat_and_defaults() -> None:
    args = parse_args(["--namespace", "a", "--namespace", "b"])
    assert args.namespace == ["a", "b"] and not args.all_namespaces
    assert (args.metrics_port, args.health_port, args.resync_seconds) == (8080, 8081, 300.0)
    assert parse_args(["--all-namespaces"]).all_namespaces


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --namespace/-n --all-namespaces/-A is required"),
        (["-n", "a", "--all-namespaces"], "not allowed with argument"),
        (["-n", "a", "--metrics-port", "0"], "port 0 is out of range"),
        (["-n", "a", "--metrics-port", "9000", "--health-port", "9000"], "must differ"),
        (["-n", "a", "--resync-seconds", "0"], "--resync-seconds must be at least 1"),
    ],
)
def test_bad_flags_exit_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_json_log_lines() -> None:
    import json
    import logging

    from phlo_operator.main import JsonFormatter

    record = logging.LogRecord(
        "phlo_operator.apply", logging.INFO, __file__, 1, "applied %s", ("Deployment",), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "applied Deployment" and entry["level"] == "INFO"
    assert parse_args(["-A", "--log-format", "json"]).log_format == "json"
