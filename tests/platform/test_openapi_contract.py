"""schemathesis against the served OpenAPI schema of the whole API (the partner interface with
valid tokens, ``/api/v1``, ``/healthz``): no 5xx, every response conforms to the documented
status codes, content types and schemas, and every error has the uniform body
``{"error": <code>, "detail": ...}``.

Bounded: ``PLANTWIRE_SCHEMATHESIS_EXAMPLES`` generated cases per operation (25 by default, what
the suite runs) and no per-example deadline. The longer run recorded in docs/benchmarks.md:

    PLANTWIRE_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest -n 0 -s \
        tests/platform/test_openapi_contract.py
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case as GenericCase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from plantwire_bus.mosquitto import free_port
from plantwire_platform.gateways.provisioning import BrokerDir, init_broker
from plantwire_platform.server import api_server
from tests.platform.partner.conftest import T0, seed, settings, tokens

Case = GenericCase[Any]
EXAMPLES = int(os.environ.get("PLANTWIRE_SCHEMATHESIS_EXAMPLES", "25"))
GRANTED = {
    "indicators": ("ind", "quality"),
    "stream": ("ind", "quality"),
    "states": ("states", "planning"),
    "counts": ("counts", "planning"),
    "telemetry": ("telem", "maintenance"),
    "alarms": ("alarms", "quality"),
}


@schemathesis.check
def uniform_error_body(ctx: Any, response: schemathesis.Response, case: Case) -> bool | None:
    """Every error answers ``{"error": <code>, "detail": ...}`` as JSON."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body") from None
    if not (isinstance(body, dict) and set(body) == {"error", "detail"}):
        raise AssertionError(f"{response.status_code} body is not uniform: {body!r}")
    if not isinstance(body["error"], str) or not body["error"]:
        raise AssertionError(f"{response.status_code} body has no error code: {body!r}")
    return None


async def _grants(url: str, ent: dict[str, int], dataset: dict[str, int]) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for code, purpose in (
            ("ind", "quality"),
            ("states", "planning"),
            ("counts", "planning"),
            ("telem", "maintenance"),
            ("alarms", "quality"),
        ):
            await conn.execute(
                "INSERT INTO partner_grant (dataset_id, supplier_id, partner_id, purpose,"
                " granularity, status, expires_at, requested_by, window_start)"
                " VALUES (%s, %s, %s, %s, 'aggregated', 'active', %s, 'test', %s)",
                (
                    dataset[code],
                    ent["SUP"],
                    ent["LEAD"],
                    purpose,
                    datetime.now(UTC) + timedelta(days=1),
                    T0 - timedelta(hours=1),
                ),
            )
        await conn.commit()


async def _broker(url: str, broker: BrokerDir) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))


@pytest.fixture
def served(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], dict[str, int]]]:
    ent, _, _, dataset = asyncio.run(seed(database_url))
    asyncio.run(_grants(database_url, ent, dataset))
    broker = BrokerDir(tmp_path / "broker")  # so that the API issues gateways' logins
    asyncio.run(_broker(database_url, broker))
    port = free_port()
    server = api_server(
        settings(database_url, api_port=port, partner_rate_per_s=10_000, partner_burst=10_000,
                 broker_dir=str(broker.path))
    )  # fmt: skip
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    try:
        yield base, tokens(ent), dataset
    finally:
        server.should_exit = True
        thread.join(10)


def one_event(case: Case) -> Case:
    case.query = {**(case.query or {}), "max_events": 1}
    return case


def bounded_run(
    strategy: st.SearchStrategy[Case],
    base: str,
    headers: dict[str, str],
    checks: list[Any],
    statuses: set[int],
) -> Callable[[], None]:
    """A hypothesis test calling the API with ``EXAMPLES`` generated cases, no deadline."""

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case: Case) -> None:
        response = case.call_and_validate(base_url=base, headers=headers, checks=checks, timeout=30)
        statuses.add(response.status_code)

    return check


@pytest.mark.long  # every operation x EXAMPLES cases, about two minutes: after the main suite
def test_partner_api_conforms_to_its_schema(
    served: tuple[str, dict[str, str], dict[str, int]],
) -> None:
    base, tokens, dataset = served

    def granted(case: Case, *, code: str, purpose: str) -> Case:
        case.path_parameters = {**(case.path_parameters or {}), "dataset_id": dataset[code]}
        case.query = {**(case.query or {}), "purpose": purpose}
        return case

    def own_client(case: Case) -> Case:  # a client the supplier's admin manages
        case.path_parameters = {**(case.path_parameters or {}), "client_id": "sup-app"}
        return case

    def grant_request(case: Case) -> Case:  # a request for a visible dataset, due to expire
        body = case.body if isinstance(case.body, dict) else {}
        expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        case.body = {
            **body,
            "dataset_id": dataset["counts"],
            "purpose": "planning",
            "expires_at": expires,
        }
        return case

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        uniform_error_body,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    statuses: dict[str, set[int]] = defaultdict(set)
    paths = {o.path for o in operations}
    assert len(operations) >= 35 and "/api/v1/enterprises" in paths and "/healthz" in paths
    started = time.monotonic()
    for operation in operations:
        # the partner client for reads and grant requests, the supplier's admin for catalog,
        # client and grant decisions, a platform admin for /api/v1
        name = f"{operation.method.upper()} {operation.path}"
        who = "sup-admin" if operation.method.upper() == "POST" else "lead-app"
        who = "lead-app" if name == "POST /partner/v1/grants" else who
        who = "admin" if operation.path.startswith("/api/v1") else who  # partner clients: 403
        headers = {"Authorization": f"Bearer {tokens[who]}"}

        strategy: st.SearchStrategy[Case] = operation.as_strategy()
        # half the cases name things that exist, the rest stay random
        if "{client_id}" in operation.path:
            strategy = st.one_of(strategy, strategy.map(own_client))
        if name == "POST /partner/v1/grants":
            strategy = st.one_of(strategy, strategy.map(grant_request))
        kind = operation.path.rsplit("/", 1)[-1]
        if operation.path.startswith("/partner/v1/datasets/"):
            # the granted dataset with its purpose
            code, purpose = GRANTED[kind]
            strategy = st.one_of(
                strategy, strategy.map(partial(granted, code=code, purpose=purpose))
            )
        if kind == "stream":  # a live stream ends after its first event here
            strategy = strategy.map(one_event)

        check = bounded_run(strategy, base, headers, checks, statuses[name])
        check()
    elapsed = time.monotonic() - started
    print(f"\n{len(operations)} operations x {EXAMPLES} examples in {elapsed:.0f} s:")
    for name, codes in sorted(statuses.items()):
        print(f"  {name}: {sorted(codes)}")
    # the run got past authentication into real answers, not only 4xx
    assert sum(200 in codes for codes in statuses.values()) >= 15, statuses
    with httpx.Client(base_url=base) as client:
        assert client.get("/healthz").status_code == 200
