"""The audit log refuses changes, and `plantwire platform audit-verify` finds a tampered row."""

from __future__ import annotations

import asyncio
import os
import sys

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.partner import audit
from tests.platform.partner.conftest import World, grant


async def verify_cli(url: str) -> tuple[int, str]:
    return await cli(url, "audit-verify")


async def cli(url: str, *args: str) -> tuple[int, str]:
    """`plantwire platform <args>` against the database at ``url``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from plantwire.cli import main; raise SystemExit(main())",
        "platform",
        *args,
        env={**os.environ, "DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def audited_traffic(w: World) -> None:
    g = await grant(w, "counts", purpose="planning")
    for purpose in ("planning", "resale", "planning"):
        await w.client.get(
            f"/partner/v1/datasets/{w.dataset['counts']}/counts",
            params={"purpose": purpose},
            headers=w.auth("lead-app"),
        )
    await w.client.post(f"/partner/v1/grants/{g['id']}/revoke", headers=w.auth("sup-admin"))


async def test_tampered_row_is_named_by_verify(world: World) -> None:
    await audited_traffic(world)
    code, out = await verify_cli(world.url)
    assert code == 0 and "audit chain intact: 6 rows" in out, out

    async with await psycopg.AsyncConnection.connect(world.url, autocommit=True) as conn:
        for statement in (
            "UPDATE partner_audit SET reason = '' WHERE id = 5",
            "DELETE FROM partner_audit WHERE id = 5",
            "TRUNCATE partner_audit",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement)
        # a superuser can get past the trigger and turn a denial into an access; the chain
        # still gives it away
        await conn.execute("ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change")
        await conn.execute(
            "UPDATE partner_audit SET outcome = 'allowed', reason = '', status = 200 WHERE id = 4"
        )
        await conn.execute("ALTER TABLE partner_audit ENABLE TRIGGER partner_audit_no_change")
    code, out = await verify_cli(world.url)
    assert code == 1 and "audit chain broken at row 4: content does not match its hash" in out


async def test_removed_row_breaks_the_chain(world: World) -> None:
    await audited_traffic(world)
    async with await psycopg.AsyncConnection.connect(world.url, autocommit=True) as conn:
        assert (await audit.verify(conn)).ok
        await conn.execute("ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change")
        await conn.execute("DELETE FROM partner_audit WHERE id = 3")
        verdict = await audit.verify(conn)
        assert (verdict.bad_id, verdict.problem) == (4, "row 3 is missing before row 4")
        # renumbering the rest to hide the hole breaks the hash links instead
        await conn.execute("UPDATE partner_audit SET id = id - 1 WHERE id > 3")
        verdict = await audit.verify(conn)
        assert verdict.bad_id == 3 and verdict.problem == "previous-hash link does not match"


async def test_both_parties_read_their_entries(world: World) -> None:
    await audited_traffic(world)
    seen = {}
    for who in ("lead-app", "sup-admin", "out-admin", "admin"):
        r = await world.client.get("/partner/v1/audit", headers=world.auth(who))
        assert r.status_code == 200, r.text
        seen[who] = [(e["id"], e["reason"]) for e in r.json()["items"]]
    assert seen["lead-app"] == seen["sup-admin"] == seen["admin"]
    assert (4, "wrong_purpose") in seen["lead-app"] and len(seen["lead-app"]) == 6
    assert seen["out-admin"] == []
    page = await world.client.get(
        "/partner/v1/audit", params={"limit": 3, "cursor": "2"}, headers=world.auth("lead-app")
    )
    assert [e["id"] for e in page.json()["items"]] == [3, 4, 5]
    assert page.json()["next_cursor"] == "5"


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
    fewer commits than entries."""

    def entry(i: int) -> audit.Entry:
        return audit.Entry(f"c{i}", None, None, None, None, None, "data.test", "allowed", "", 200)

    async with AsyncConnectionPool(
        database_url, kwargs={"autocommit": True}, min_size=2, max_size=4
    ) as pool:
        writers = [audit.AuditWriter(), audit.AuditWriter()]
        running = [asyncio.create_task(w.run(pool)) for w in writers]
        await asyncio.sleep(0)
        async with await psycopg.AsyncConnection.connect(database_url) as direct:
            ids = await asyncio.gather(
                *(writers[i % 2].append(entry(i)) for i in range(200)),
                audit.append(direct, entry(999)),
            )
            verdict = await audit.verify(direct)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    assert sorted(ids) == list(range(1, 202))
    assert verdict.ok and verdict.rows == 201
    assert sum(w.items for w in writers) == 200
    assert sum(w.batches for w in writers) <= 20
