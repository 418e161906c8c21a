"""PostgreSQL connections retried for PHLO_POSTGRES_RETRY_SECONDS (phlo_dagster/postgres_retry.py) where
dagster-postgres connects: its retry_pg_connection_fn, which every storage call goes through
(create_pg_connection) and the storages import by name. Time is a fake clock: no database, no waiting.
tests/integration/test_dev_postgres_outage.py shows it against a real PostgreSQL stopped for 20 s."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy.exc

from phlo_dagster import postgres_retry
from phlo_dagster.settings import SettingsError

pytestmark = pytest.mark.unit

OUTAGE_SECONDS = 20.0  # longer than dagster-postgres's own 6 tries (about 11 s)


class FakeTime:
    """time.monotonic and time.sleep on a clock that only sleeping moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Outage:
    """A connect that fails until `seconds` of the fake clock have passed, then returns what `then` gives."""

    def __init__(self, clock: FakeTime, seconds: float, then: object = "connected") -> None:
        self.clock, self.until, self.then, self.tries = clock, clock.now + seconds, then, 0

    def __call__(self) -> object:
        self.tries += 1
        if self.clock.now < self.until:
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception("Connection refused"))
        return self.then() if callable(self.then) else self.then


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """The fake clock for our retries (dagster-postgres's own: use_fake_time)."""
    clock = FakeTime()
    monkeypatch.setattr(
        postgres_retry, "time", types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep)
    )
    return clock


def use_fake_time(module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster_postgres.utils sleeping on the same fake clock as ours."""
    monkeypatch.setattr(module, "time", postgres_retry.time)


@pytest.fixture
def fresh_dagster_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """dagster-postgres as a new process sees it: not imported yet (the modules this process holds come
    back afterwards), our finder not installed."""
    for name in [n for n in sys.modules if n.partition(".")[0] == "dagster_postgres"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(
        sys, "meta_path", [f for f in sys.meta_path if type(f).__name__ != "_PatchWhenImported"]
    )
    monkeypatch.setattr(postgres_retry, "_budget", postgres_retry.DEFAULT_BUDGET_SECONDS)
    monkeypatch.setattr(postgres_retry, "_library_fn", None)
    yield


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 300.0), ("", 300.0), (" 20 ", 20.0), ("0", 0.0), ("1.5", 1.5)]
)
def test_the_budget_comes_from_the_environment(value: str | None, seconds: float) -> None:
    environ = {} if value is None else {"PHLO_POSTGRES_RETRY_SECONDS": value}
    assert postgres_retry.budget_seconds(environ) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan", "5m"])
def test_a_bad_budget_is_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^PHLO_POSTGRES_RETRY_SECONDS='{value}': expected a number"):
        postgres_retry.budget_seconds({"PHLO_POSTGRES_RETRY_SECONDS": value})


def test_the_waits_double_from_a_fifth_of_a_second_to_five_seconds() -> None:
    assert [postgres_retry.waits(n) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert postgres_retry.waits(10**6) == 5.0  # no float overflow on a budget of days


def test_retry_within_tries_until_the_outage_ends_and_no_longer_than_the_budget() -> None:
    clock = FakeTime()
    connect = Outage(clock, OUTAGE_SECONDS)
    retry_on = (sqlalchemy.exc.OperationalError,)
    result = postgres_retry.retry_within(connect, 300, retry_on, clock=clock.monotonic, sleep=clock.sleep)
    assert result == "connected" and connect.tries > 6
    assert OUTAGE_SECONDS <= sum(clock.slept) <= OUTAGE_SECONDS + 5.0  # it noticed within one 5 s wait
    clock, started = FakeTime(), 1000.0
    never = Outage(clock, 10**9)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        postgres_retry.retry_within(never, 60, retry_on, clock=clock.monotonic, sleep=clock.sleep)
    assert clock.now - started == 60.0  # the last wait is cut to the budget, then one last try
    with pytest.raises(sqlalchemy.exc.OperationalError):  # 0: one try, no wait
        postgres_retry.retry_within(
            Outage(clock, 10**9), 0, retry_on, clock=clock.monotonic, sleep=clock.sleep
        )


def test_dagster_postgres_alone_gives_up_within_the_outage(
    fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the budget is for: dagster-postgres's own retries end about 11 s into the outage."""
    from dagster_postgres import utils

    use_fake_time(utils, monkeypatch)
    library = utils.retry_pg_connection_fn
    if library is postgres_retry.retry_pg_connection_fn:  # an earlier test of this process installed ours
        library = postgres_retry._library_fn
    assert library is not None and library.__module__ == "dagster_postgres.utils"
    connect = Outage(fake_time, OUTAGE_SECONDS)
    with pytest.raises(utils.DagsterPostgresException, match="too many retries"):
        library(connect)
    assert connect.tries == 6
    assert 10 < fake_time.now - 1000.0 < 13


def test_installed_before_dagster_postgres_every_storage_connection_gets_the_budget(
    fresh_dagster_postgres: None, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """install() before dagster-postgres is imported (a code server, run worker or step process loading
    phlo_dagster.definitions; the webserver and daemon before they open the instance): the storages, which
    import the function by name, get ours, and a connection made during a 20 s outage waits it out.

    Mutation (2026-12-06): with _patch() returning at once (the budget never put in place), this test and
    the next failed: create_pg_connection raised DagsterPostgresException ("too many retries for DB
    connection") after dagster-postgres's 6 tries, about 11 s into the 20 s outage; the next found the
    storages holding dagster-postgres's function."""
    monkeypatch.setenv("PHLO_POSTGRES_RETRY_SECONDS", "60")
    assert postgres_retry.install() == 60.0
    assert postgres_retry.install() == 60.0  # idempotent: one finder
    assert sum(type(f).__name__ == "_PatchWhenImported" for f in sys.meta_path) == 1
    assert "dagster_postgres.utils" not in sys.modules  # nothing imported for a SQLite instance
    event_log = importlib.import_module("dagster_postgres.event_log.event_log")
    run_storage = importlib.import_module("dagster_postgres.run_storage.run_storage")
    schedule_storage = importlib.import_module("dagster_postgres.schedule_storage.schedule_storage")
    utils = sys.modules["dagster_postgres.utils"]
    use_fake_time(utils, monkeypatch)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    connect = Outage(fake_time, OUTAGE_SECONDS, engine.connect)
    engine.connect = connect  # type: ignore[method-assign]
    with utils.create_pg_connection(engine) as connection:  # every storage call connects through it
        assert connection.execute(sqlalchemy.text("SELECT 2")).scalar() == 2
    assert OUTAGE_SECONDS <= fake_time.now - 1000.0 <= OUTAGE_SECONDS + 5.0
    assert connect.tries > 6
    for module in (utils, event_log, run_storage, schedule_storage):  # their table checks at start-up
        assert module.retry_pg_connection_fn is postgres_retry.retry_pg_connection_fn, module.__name__
    assert not any(type(f).__name__ == "_PatchWhenImported" for f in sys.meta_path)  # done with

    down = Outage(fake_time, 10**9)
    with pytest.raises(
        utils.DagsterPostgresException, match=r"\(none within PHLO_POSTGRES_RETRY_SECONDS=60\)$"
    ):
        utils.retry_pg_connection_fn(down)
    tries = down.tries
    with pytest.raises(utils.DagsterPostgresException, match=r"^too many retries for DB connection$"):
        postgres_retry.retry_pg_connection_fn(down, retry_limit=2)  # an explicit count is the library's
    assert down.tries - tries == 3


def test_installed_after_dagster_postgres_it_is_patched_in_place(
    fresh_dagster_postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """install() in a process that already imported dagster-postgres (opened a PostgreSQL instance)."""
    utils = importlib.import_module("dagster_postgres.utils")
    event_log = importlib.import_module("dagster_postgres.event_log.event_log")
    library = utils.retry_pg_connection_fn
    assert event_log.retry_pg_connection_fn is library
    monkeypatch.setenv("PHLO_POSTGRES_RETRY_SECONDS", "45")
    assert postgres_retry.install() == 45.0
    assert (
        utils.retry_pg_connection_fn
        is event_log.retry_pg_connection_fn
        is postgres_retry.retry_pg_connection_fn
    )
    assert postgres_retry._library_fn is library
    assert not any(type(f).__name__ == "_PatchWhenImported" for f in sys.meta_path)
