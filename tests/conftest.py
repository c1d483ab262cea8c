"""Real services for the tests: a Mosquitto started with the project's config on a free port,
and a PostgreSQL server (the running one when reachable, else an embedded one) in which every
test gets a fresh, migrated database cloned from a template.

With ``CI=true`` a missing service fails the run; elsewhere the tests that need it are skipped
with the reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwire_bus.mosquitto import MosquittoProcess, find_mosquitto, start_mosquitto
from plantwire_platform import services
from plantwire_platform.database import migrate

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOCAL_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql:///postgres",
)


def missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# -- MQTT --------------------------------------------------------------------------------------
def _start_broker(tmp: Path) -> MosquittoProcess:
    if find_mosquitto() is None:
        missing("no mosquitto binary on PATH")
    return start_mosquitto(tmp)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """One broker for the session; tests use unique group ids / topics."""
    broker = _start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A broker of the test's own, which the test may kill and restart."""
    broker = _start_broker(tmp_path / "mosquitto")
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_url(mosquitto: MosquittoProcess) -> str:
    return mosquitto.url


@pytest.fixture
def unique() -> str:
    """A short unique token for topic elements and client ids."""
    return uuid.uuid4().hex[:10]


# -- PostgreSQL --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    explicit = os.environ.get("PLANTWIRE_TEST_DATABASE_URL")
    candidates = (explicit,) if explicit else LOCAL_ADMIN_URLS
    for url in candidates:
        if services.database_reachable(url):
            yield url
            return
    if explicit:
        missing(f"PLANTWIRE_TEST_DATABASE_URL={explicit} is not reachable")
    try:
        server = services.embedded_postgres(tmp_path_factory.mktemp("embedded-pg") / "data")
    except Exception as exc:
        missing(f"no PostgreSQL reachable and the embedded one failed: {exc}")
        raise
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"plantwire_tmpl_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(pg_admin_url, name, fresh=True)
    asyncio.run(migrate(url))
    yield name
    services.drop_database(pg_admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    import psycopg
    from psycopg import sql

    name = f"plantwire_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(pg_template)
            )
        )
    yield services.with_database(pg_admin_url, name)
    services.drop_database(pg_admin_url, name)
