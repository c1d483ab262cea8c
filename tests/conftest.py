"""Real services for the tests: a Mosquitto started with the project's config on a free port,
and a PostgreSQL server (the running one when reachable, else an embedded one) in which every
test gets a fresh, migrated database cloned from a template. The database tests of the folders
in ``BOTH_BACKENDS`` run twice: on that plain PostgreSQL and on a private PostgreSQL 15 cluster
with TimescaleDB preloaded (installed from ``../shared/timescaledb`` when missing).

With ``CI=true`` a missing service fails the run; elsewhere the tests that need it are skipped
with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]

from plantwire_bus.mosquitto import MosquittoProcess, find_mosquitto, start_mosquitto
from plantwire_platform import services
from plantwire_platform.database import migrate

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Tests start many APIs: their worker processes start when a computation first needs one
# (tests/platform/test_workers_start.py covers starting them with the API).
os.environ.setdefault("PLANTWIRE_API_START_WORKERS", "false")
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


# -- PostgreSQL and TimescaleDB ---------------------------------------------------------------
BACKENDS = ("postgres", "timescaledb")
# Database tests under these folders and files run on both backends (README, "Development"):
# every test that stores or reads samples, state intervals or roll-ups. The partner tests of
# grants, tokens and audit read none of them and run on plain PostgreSQL only.
BOTH_BACKENDS = (
    "tests/golden/",
    "tests/platform/api/test_indicators_routes.py",
    "tests/platform/api/test_machines.py",
    "tests/platform/indicators/",
    "tests/platform/ingest/",
    "tests/platform/partner/test_data.py",
    "tests/platform/partner/test_gaps.py",
    "tests/platform/partner/test_webhooks.py",
    "tests/platform/storage/",
)
_DATABASE_FIXTURES = {"database_url", "pg_admin_url"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run this database test on these backends only"
    )


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node: pytest.Item | pytest.Collector, report: Any) -> None:
    """A test that failed still has its timeout over its teardown.

    pytest-timeout stops a test's timer when the test fails (so that a debugger can take its
    time); a teardown that then hangs (a task left behind, waited for by the event loop's
    teardown) would hang the whole run. So the timer starts again, for the whole timeout,
    unless a debugger is asked for (``--pdb``)."""
    if not isinstance(node, pytest.Item) or report.when == "teardown":
        return
    if node.config.getoption("usepdb", False):
        return
    timeout = float(node.config.getoption("timeout", None) or node.config.getini("timeout") or 0)
    if timeout > 0:
        settings = pytest_timeout.Settings(timeout, "thread", False, False)
        node.config.pluginmanager.hook.pytest_timeout_set_timer(item=node, settings=settings)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        names = tuple(marker.args)
    else:
        where = Path(str(metafunc.definition.path)).resolve()
        relative = where.relative_to(Path(str(metafunc.config.rootpath)).resolve()).as_posix()
        if not relative.startswith(BOTH_BACKENDS):
            return
        names = BACKENDS
    metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database server kind of this test: 'postgres' (plain) or 'timescaledb'."""
    return str(getattr(request, "param", "postgres"))


@pytest.fixture(scope="session")
def plain_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    explicit = os.environ.get("PLANTWIRE_TEST_DATABASE_URL")
    candidates = (explicit,) if explicit else LOCAL_ADMIN_URLS
    for url in candidates:
        if services.database_reachable(url):
            yield url
            dropped(url)
            return
    if explicit:
        missing(f"PLANTWIRE_TEST_DATABASE_URL={explicit} is not reachable")
    try:
        server = services.embedded_postgres(tmp_path_factory.mktemp("embedded-pg") / "data")
    except Exception as exc:
        missing(f"no PostgreSQL reachable and the embedded one failed: {exc}")
        raise
    try:
        yield server.url
        dropped(server.url)
    finally:
        server.stop()


TIMESCALEDB_SEEN: list[str] = []  # extension versions this process ran tests on


@pytest.fixture(scope="session")
def timescale_admin_url() -> Iterator[str]:
    """A private PostgreSQL 15 cluster with TimescaleDB preloaded, for this test process
    (the extension is installed into PostgreSQL 15 first when missing)."""
    from plantwire_platform import timescaledb

    try:
        server = timescaledb.start_cluster()
    except timescaledb.TimescaleUnavailable as exc:
        missing(f"TimescaleDB: {exc}")
        raise
    try:
        TIMESCALEDB_SEEN.append(timescaledb.extension_version(server.url) or "?")
        yield server.url
        dropped(server.url)
    finally:
        server.stop()


@pytest.fixture
def pg_admin_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The administrative URL of this test's backend's server."""
    name = "timescale_admin_url" if backend == "timescaledb" else "plain_admin_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def pg_templates() -> Iterator[dict[str, tuple[str, str]]]:
    """Per admin URL, a migrated database that each test's database is cloned from."""
    made: dict[str, tuple[str, str]] = {}
    yield made
    for admin_url, (name, _) in made.items():
        with contextlib.suppress(Exception):
            services.drop_database(admin_url, name)


def template_of(admin_url: str, templates: dict[str, tuple[str, str]]) -> str:
    """The name of the migrated template database on ``admin_url``'s server (made once)."""
    if admin_url not in templates:
        name = f"plantwire_tmpl_{uuid.uuid4().hex[:8]}"
        url = services.ensure_database(admin_url, name, fresh=True)
        asyncio.run(migrate(url))
        templates[admin_url] = (name, url)
    return templates[admin_url][0]


@pytest.fixture
def pg_template(pg_admin_url: str, pg_templates: dict[str, tuple[str, str]]) -> str:
    return template_of(pg_admin_url, pg_templates)


@contextlib.contextmanager
def cloned(admin_url: str, template: str) -> Iterator[str]:
    """A fresh database cloned from ``template``, dropped (in the background, see
    :func:`drop_later`) when the block ends."""
    import psycopg
    from psycopg import sql

    name = f"plantwire_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield services.with_database(admin_url, name)
    finally:
        drop_later(admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    with cloned(pg_admin_url, pg_template) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(
    plain_admin_url: str, pg_templates: dict[str, tuple[str, str]]
) -> Iterator[str]:
    """A fresh, migrated database (plain PostgreSQL) that a module's tests share: only for
    tests that change nothing another test of the module reads."""
    with cloned(plain_admin_url, template_of(plain_admin_url, pg_templates)) as url:
        yield url


# DROP DATABASE waits for the server to forget the database's files (seconds on a server with
# fsync on while other tests write: 2-9 s after a golden run); the next test need not wait for
# that, so finished tests' databases are dropped in the background, and each server's fixture
# waits for its drops (and fails on a failed one) before it ends.
_DROPPER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="drop-database")
_DROPPING: dict[str, list[Future[None]]] = {}


def drop_later(admin_url: str, name: str) -> None:
    """Drop database ``name`` of the server at ``admin_url`` in the background."""
    _DROPPING.setdefault(admin_url, []).append(
        _DROPPER.submit(services.drop_database, admin_url, name)
    )


def dropped(admin_url: str) -> None:
    """Wait until every database :func:`drop_later` was given on ``admin_url`` is dropped."""
    for drop in _DROPPING.pop(admin_url, []):
        drop.result()


# -- the TimescaleDB run in the log -----------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: tell the controller
        workeroutput["timescaledb"] = ",".join(sorted(set(TIMESCALEDB_SEEN)))


def pytest_testnodedown(node: Any, error: Any) -> None:
    seen = getattr(node, "workeroutput", {}).get("timescaledb", "")
    TIMESCALEDB_SEEN.extend(v for v in seen.split(",") if v)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    versions = sorted(set(TIMESCALEDB_SEEN))
    if versions:
        terminalreporter.write_line(
            f"database backends: postgres and timescaledb (TimescaleDB {', '.join(versions)} in"
            " a private PostgreSQL 15 cluster) for the tests under BOTH_BACKENDS"
        )
