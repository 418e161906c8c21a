"""The webserver's pooled storage connections are checked before use (phlo_dagster.webserver): a connection
that died while pooled (its database restarted) is replaced instead of failing the request that gets it.
tests/integration/test_dev_postgres_outage.py shows it against a real PostgreSQL restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy.pool

from phlo_dagster import webserver

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    """One held connection, as optimize_for_webserver configures a storage's engine."""
    engine = sqlalchemy.create_engine(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        poolclass=sqlalchemy.pool.QueuePool,
        pool_size=1,
        max_overflow=0,
    )
    yield engine
    engine.dispose()
    if sqlalchemy.event.contains(sqlalchemy.pool.Pool, "checkout", webserver._ping):
        sqlalchemy.event.remove(sqlalchemy.pool.Pool, "checkout", webserver._ping)


def kill_pooled_connection(engine: sqlalchemy.Engine) -> None:
    """Use the pool's one connection, then close its driver connection behind the pool's back."""
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))
        driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.close()


def test_a_dead_pooled_connection_is_replaced(engine: sqlalchemy.Engine) -> None:
    """Mutation (2026-12-06): ping_pooled_connections() doing nothing: the query failed ("Cannot operate on a
    closed database"), as the second case shows."""
    webserver.ping_pooled_connections()
    webserver.ping_pooled_connections()  # idempotent: one listener
    kill_pooled_connection(engine)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT 2")).scalar() == 2


def test_without_the_check_the_request_fails(engine: sqlalchemy.Engine) -> None:
    kill_pooled_connection(engine)
    with (
        pytest.raises(sqlalchemy.exc.ProgrammingError, match="closed database"),
        engine.connect() as connection,
    ):
        connection.execute(sqlalchemy.text("SELECT 2"))
