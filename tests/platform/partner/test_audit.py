"""The audit log under attack: every way of changing it is refused or found.

Changes made past the append-only trigger (as the tables' owner, which the application's role is
unless the log is sealed): updating, deleting (in the middle, at the end, with the head moved
back), inserting after the head, reordering, rewriting with the hashes recomputed (without the
key, with the key id cleared, under another key), rolling back to an earlier state - each one
found by `audit-verify` and by the verify endpoint both parties call. Sealed (`plantwire
platform audit-seal`), the tables belong to a role of their own, and the application's role is
refused every change, the trigger's disabling included, while it keeps appending.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.partner import audit, audit_chain
from plantwire_platform.partner.audit_chain import GENESIS, AuditKey, canonical
from plantwire_platform.server import create_app
from tests.platform.commands import platform_command
from tests.platform.partner.conftest import AUDIT_KEY, World, grant, serving, settings

KEY = AuditKey(AUDIT_KEY)
Conn = psycopg.AsyncConnection[Any]


async def cli(url: str, *args: str) -> tuple[int, str]:
    """`plantwire platform <args>` against the database at ``url``, with the audit key."""
    return await platform_command(url, *args, PLANTWIRE_AUDIT_KEY=AUDIT_KEY)


async def audited_traffic(w: World) -> int:
    """A grant, reads allowed and denied, a revocation; returns the number of entries."""
    g = await grant(w, "counts", purpose="planning")
    for purpose in ("planning", "resale", "planning"):
        await w.client.get(
            f"/partner/v1/datasets/{w.dataset['counts']}/counts",
            params={"purpose": purpose},
            headers=w.auth("lead-app"),
        )
    await w.client.post(f"/partner/v1/grants/{g['id']}/revoke", headers=w.auth("sup-admin"))
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        head_id, _, _ = await audit_chain.head(conn)
    return head_id


async def verify_api(w: World, who: str, language: str = "en", **anchors: Any) -> dict[str, Any]:
    headers = {**w.auth(who), "Accept-Language": language}
    r = await w.client.get("/partner/v1/audit/verify", params=anchors, headers=headers)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def rows(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM partner_audit ORDER BY id")
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


async def rehash(conn: Conn, link: Callable[[str, dict[str, Any]], str], mac: str = "") -> None:
    """Recompute every hash in id order with ``link`` and point the head at the last one, as
    someone who changed rows would to cover it up."""
    prev = GENESIS
    for row in await rows(conn):
        content = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
        digest = link(prev, content)
        await conn.execute(
            "UPDATE partner_audit SET prev_hash = %s, hash = %s WHERE id = %s",
            (prev, digest, row["id"]),
        )
        prev = digest
    await conn.execute(
        "UPDATE partner_audit_head SET id = (SELECT max(id) FROM partner_audit), hash = %s,"
        " mac = coalesce(nullif(%s, ''), mac)",
        (prev, mac),
    )


def sha256_link(prev: str, row: dict[str, Any]) -> str:
    """What a forger without the key can compute: SHA-256 over the same bytes."""
    return hashlib.sha256(prev.encode() + b"\n" + canonical(row)).hexdigest()


async def move_head_back(conn: Conn, n: int) -> None:
    await conn.execute("DELETE FROM partner_audit WHERE id > %s", (n - 2,))
    await conn.execute(
        "UPDATE partner_audit_head SET id = %s,"
        " hash = (SELECT hash FROM partner_audit WHERE id = %s)",
        (n - 2, n - 2),
    )


async def without_key_id(conn: Conn, n: int) -> None:
    await conn.execute("UPDATE partner_audit SET outcome = 'allowed' WHERE id = 4")
    await conn.execute("UPDATE partner_audit SET key_id = ''")
    await rehash(conn, sha256_link)


async def under_another_key(conn: Conn, n: int) -> None:
    forger = AuditKey("another secret that is long enough!!")
    await conn.execute("UPDATE partner_audit SET key_id = %s", (forger.key_id,))
    await rehash(conn, lambda p, r: forger.link(p, {c: r[c] for c in audit_chain.COLUMNS}))
    head_id, head_hash, _ = await audit_chain.head(conn)
    await conn.execute(
        "UPDATE partner_audit_head SET mac = %s", (forger.head_mac(head_id, head_hash),)
    )


async def reorder(conn: Conn, n: int) -> None:
    for old, new in ((3, -3), (4, 3), (-3, 4)):
        await conn.execute("UPDATE partner_audit SET id = %s WHERE id = %s", (new, old))


Tamper = Callable[[Conn, int], Awaitable[None]]


def sql(*statements: str) -> Tamper:
    async def run(conn: Conn, n: int) -> None:
        for statement in statements:
            await conn.execute(statement.replace("{n}", str(n)).encode())

    return run


# name -> (what is done past the trigger, the first entry found wrong (N: the last one),
#          what verification says)
TAMPERING: dict[str, tuple[Tamper, int | str, str]] = {
    "update": (
        sql("UPDATE partner_audit SET outcome = 'allowed', reason = '', status = 200 WHERE id = 4"),
        4,
        "content does not match its hash",
    ),
    "delete in the middle": (
        sql("DELETE FROM partner_audit WHERE id = 3"),
        4,
        "entry 3 is missing before entry 4",
    ),
    "delete at the end": (
        sql("DELETE FROM partner_audit WHERE id > {n} - 2"),
        "N",
        "the chain ends at entry N-2 but the head is at N",
    ),
    "delete at the end, head moved back": (move_head_back, "N-2", "the head's MAC does not match"),
    "insert after the head": (
        sql(
            "INSERT INTO partner_audit SELECT id + 1, at, client_id, actor_id, supplier_id,"
            " partner_id, dataset_id, grant_id, action, 'allowed', '', 200, rows, source,"
            " repeats, key_id, hash, hash FROM partner_audit WHERE id = {n}"
        ),
        "N+1",
        "lies beyond the head",
    ),
    "reorder": (reorder, 3, "previous-hash link does not match"),
    "rewrite and rehash without the key": (
        lambda c, n: rehash(c, sha256_link),
        1,
        "content does not match its hash",
    ),
    "rewrite with the key id cleared": (without_key_id, 1, "written under key ''"),
    "rewrite under another key": (under_another_key, 1, f"not {KEY.key_id}"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_found(world: World, case: str) -> None:
    """The application's own role (here, like by default, the tables' owner) disables the
    append-only trigger and changes the log: the CLI and the verify endpoint find it."""
    n = await audited_traffic(world)
    assert n >= 6
    code, out = await cli(world.url, "audit-verify")
    assert code == 0 and f"audit chain intact: {n} rows up to head {n}" in out, out
    tamper, bad, problem = TAMPERING[case]
    async with await psycopg.AsyncConnection.connect(world.url, autocommit=True) as conn:
        await conn.execute("ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change")
        await tamper(conn, n)
        await conn.execute("ALTER TABLE partner_audit ENABLE TRIGGER partner_audit_no_change")
    bad_id = {"N": n, "N-2": n - 2, "N+1": n + 1}.get(str(bad), bad)
    problem = problem.replace("N-2", str(n - 2)).replace("N", str(n))
    code, out = await cli(world.url, "audit-verify")
    assert code == 1 and f"audit chain broken at row {bad_id}: " in out and problem in out, out
    for who in ("lead-app", "sup-admin"):  # both parties see it
        result = await verify_api(world, who)
        assert (result["ok"], result["bad_id"]) == (False, bad_id), (case, result)
        assert problem in result["problem"], (case, result)
    # in the reader's language: the Chinese names the same entries
    chinese = (await verify_api(world, "sup-admin", "zh-CN"))["problem"]
    assert re.search(r"[\u4e00-\u9fff]", chinese) and chinese != result["problem"], chinese
    assert sorted(re.findall(r"\d+", chinese)) == sorted(re.findall(r"\d+", result["problem"]))


async def test_a_rollback_is_found_with_an_anchor(world: World, tmp_path: Path) -> None:
    """Rows and head restored to an earlier state (as from a backup) leave a consistent chain;
    the signed head a party kept finds it, through the API and the CLI."""
    await audited_traffic(world)
    async with await psycopg.AsyncConnection.connect(world.url, autocommit=True) as conn:
        earlier = await audit_chain.head(conn)
    r = await world.client.get(
        f"/partner/v1/datasets/{world.dataset['counts']}/counts",
        params={"purpose": "planning"},
        headers=world.auth("sup-app"),
    )
    assert r.status_code == 200
    kept = await world.client.get("/partner/v1/audit/head", headers=world.auth("lead-app"))
    anchor = kept.json()
    assert audit_chain.anchor_signed(anchor, KEY.public_key)
    assert anchor["id"] == earlier[0] + 1  # the read above
    path = tmp_path / "anchor.json"
    path.write_text(json.dumps(anchor))
    params = {"anchor_id": anchor["id"], "anchor_hash": anchor["hash"]}
    result = await verify_api(world, "lead-app", **params)
    assert result["ok"] and result["anchors"] == [anchor["id"]], result
    assert (await cli(world.url, "audit-verify", "--anchor", str(path)))[0] == 0

    async with await psycopg.AsyncConnection.connect(world.url, autocommit=True) as conn:
        await conn.execute("ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change")
        await conn.execute("DELETE FROM partner_audit WHERE id > %s", (earlier[0],))
        await conn.execute("UPDATE partner_audit_head SET id = %s, hash = %s, mac = %s", earlier)
    code, out = await cli(world.url, "audit-verify")
    assert code == 0, out  # consistent in itself
    code, out = await cli(world.url, "audit-verify", "--anchor", str(path))
    assert code == 1 and "beyond the end of the chain" in out, out
    result = await verify_api(world, "lead-app", **params)
    assert result["ok"] is False and result["bad_id"] == anchor["id"], result
    assert "beyond the end of the chain" in result["problem"]
    path.write_text(json.dumps({**anchor, "id": anchor["id"] - 1}))  # a forged anchor
    code, out = await cli(world.url, "audit-verify", "--anchor", str(path))
    assert code == 1 and "not signed with this key" in out, out


# -- sealed: the tables belong to a role the application cannot use ---------------------------


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def roles(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """An owner role for the audit and a login role for the application, created for this test
    (roles belong to the cluster) with the application's rights on everything else."""
    tag = uuid.uuid4().hex[:8]
    owner, app = f"pw_audit_{tag}", f"pw_app_{tag}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"CREATE ROLE {owner} NOLOGIN".encode())
        await conn.execute(f"CREATE ROLE {app} LOGIN".encode())
        for grant_sql in (
            "GRANT USAGE ON SCHEMA public TO {app}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}",
            "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {app}",
        ):
            await conn.execute(grant_sql.format(app=app).encode())
    try:
        yield owner, app
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f"DROP OWNED BY {owner}, {app}".encode())
            await conn.execute(f"DROP ROLE {owner}, {app}".encode())


async def test_sealed_log_refuses_every_change_by_the_application(
    database_url: str, roles: tuple[str, str]
) -> None:
    owner, app = roles
    async with serving(database_url) as w:  # seeded as the administrator
        await audited_traffic(w)
    code, out = await cli(database_url, "audit-seal", "--owner", owner, "--app", app)
    assert code == 0, out
    app_url = as_role(database_url, app)

    # the API, connected as the application's role, still appends and verifies
    api = create_app(settings(app_url))
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as c,
    ):
        w.client = c
        r = await c.get("/partner/v1/catalog", headers=w.auth("lead-app"))
        assert r.status_code == 200, r.text
        result = await verify_api(w, "sup-admin")
        assert result["ok"], result

    refused = {
        "UPDATE partner_audit SET reason = 'x' WHERE id = 2": "permission denied",
        "DELETE FROM partner_audit WHERE id = 2": "permission denied",
        "TRUNCATE partner_audit": "permission denied",
        "INSERT INTO partner_audit SELECT * FROM partner_audit WHERE id = 1": "permission denied",
        "UPDATE partner_audit_head SET id = id - 1": "permission denied",
        "ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change": "must be owner",
        "ALTER TABLE partner_audit OWNER TO CURRENT_USER": "must be owner",
        "DROP TABLE partner_audit CASCADE": "must be owner|permission denied",
        "CREATE OR REPLACE FUNCTION partner_audit_write(rows json, head_mac text)"
        " RETURNS void LANGUAGE sql AS 'SELECT'": "must be owner|permission denied",
        # the append functions take only entries that continue the chain
        "SELECT partner_audit_write((SELECT json_agg(a) FROM partner_audit a WHERE id = 2),"
        " '')": "does not continue the chain",
    }
    async with await psycopg.AsyncConnection.connect(app_url, autocommit=True) as conn:
        for statement, error in refused.items():
            with pytest.raises(psycopg.Error, match=error):
                await conn.execute(statement.encode())
    code, out = await cli(database_url, "audit-verify")
    assert code == 0 and "audit chain intact" in out, out


async def test_seal_is_refused_when_the_application_could_get_around_it(
    database_url: str, roles: tuple[str, str]
) -> None:
    owner, app = roles
    cases = [
        ("postgres", "is a superuser"),
        (owner, "or a member of it"),
    ]
    for who, problem in cases:
        code, out = await cli(database_url, "audit-seal", "--owner", owner, "--app", who)
        assert code == 2 and problem in out, out  # the command's arguments are wrong
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        name = urlsplit(database_url).path.lstrip("/")
        await conn.execute(f"ALTER DATABASE {name} OWNER TO {app}".encode())
    code, out = await cli(database_url, "audit-seal", "--owner", owner, "--app", app)
    assert code == 2 and "owns the schema of the audit tables" in out, out
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"ALTER DATABASE {name} OWNER TO CURRENT_USER".encode())


async def test_both_parties_read_their_entries(world: World) -> None:
    n = await audited_traffic(world)
    seen = {}
    for who in ("lead-app", "sup-admin", "out-admin", "admin"):
        r = await world.client.get("/partner/v1/audit", headers=world.auth(who))
        assert r.status_code == 200, r.text
        seen[who] = [(e["id"], e["action"], e["reason"]) for e in r.json()["items"]]
    # the supplier and the partner see every entry of their traffic (an entry is written
    # after its answer is ready: a read of the log does not see itself); OUT sees none of it
    assert seen["lead-app"] == seen["sup-admin"] == seen["admin"][:n]
    assert len(seen["lead-app"]) == n and (4, "data.counts", "wrong_purpose") in seen["lead-app"]
    assert seen["admin"][n:] == [(n + i, "audit.read", "") for i in (1, 2, 3)]
    assert seen["out-admin"] == []
    page = await world.client.get(
        "/partner/v1/audit", params={"limit": 3, "cursor": "2"}, headers=world.auth("lead-app")
    )
    assert [e["id"] for e in page.json()["items"]] == [3, 4, 5]
    assert page.json()["next_cursor"] == "5"
    # newest first (the console's view): pages going further back, until the first entry
    backwards: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "3", "newest_first": "true", **({"cursor": cursor} if cursor else {})}
        got = await world.client.get(
            "/partner/v1/audit", params=params, headers=world.auth("lead-app")
        )
        backwards += [e["id"] for e in got.json()["items"]]
        cursor = got.json()["next_cursor"]
        if cursor is None:
            break
    everything = await world.client.get(
        "/partner/v1/audit", params={"limit": 500}, headers=world.auth("lead-app")
    )
    ids = [e["id"] for e in everything.json()["items"]]
    assert backwards[0] > seen["lead-app"][-1][0]  # the reads since are there too
    assert backwards == sorted((i for i in ids if i <= backwards[0]), reverse=True)


async def test_cli_registers_the_first_admin(world: World) -> None:
    code, out = await cli(world.url, "partner-client", "root", "--role", "platform_admin")
    assert code == 0, out
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    r = await world.client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "root",
            "client_secret": fields["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    code, out = await cli(world.url, "partner-client", "x", "--role", "partner")
    assert code == 2 and "--enterprise is required" in out


async def test_concurrent_appends_share_commits_and_keep_one_chain(database_url: str) -> None:
    """Two group-commit writers (as in two API processes) and a transactional append, all at
    once: every entry gets its own consecutive id, the chain verifies, and the writers needed far
    fewer commits than entries. Identical refusals of a flood committed together are one entry
    counting them."""

    def entry(i: int, status: int = 200) -> audit.Entry:
        outcome = "allowed" if status == 200 else "denied"
        return audit.Entry(f"c{i}", None, None, None, None, None, "data.test", outcome, "", status)

    async with AsyncConnectionPool(
        database_url, kwargs={"autocommit": True}, min_size=2, max_size=4
    ) as pool:
        writers = [audit.AuditWriter(KEY), audit.AuditWriter(KEY)]
        running = [asyncio.create_task(w.run(pool)) for w in writers]
        await asyncio.sleep(0)
        async with await psycopg.AsyncConnection.connect(database_url) as direct:
            ids = await asyncio.gather(
                *(writers[i % 2].append(entry(i)) for i in range(200)),
                audit.append(direct, KEY, entry(999)),
            )
            flood = await asyncio.gather(*(writers[0].append(entry(7, 429)) for _ in range(50)))
            verdict = await audit_chain.verify(direct, KEY)
            cur = await direct.execute("SELECT sum(repeats) FROM partner_audit WHERE status = 429")
            repeats = (await cur.fetchone() or (0,))[0]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    assert sorted(ids) == list(range(1, 202))
    assert repeats == 50 and len(set(flood)) < 50 and min(flood) == 202
    assert verdict.ok and verdict.rows == 201 + len(set(flood)), verdict
    assert sum(w.items for w in writers) == 250
    assert sum(w.batches for w in writers) <= 30
