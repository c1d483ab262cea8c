"""What must be unique in the registry stays so, on a real PostgreSQL: an enterprise's sites
and their gateways (edge nodes), a site's lines and equipment, a line's process steps. A
document that names one twice is refused (422) naming both places; an entry or document that
takes a code or a gateway already registered is refused (409) naming what has it; nothing is
written either way, in the request's language and on the command line alike. The database
refuses two sites of one enterprise with one edge node itself, and its migration stops on a
database that holds such sites, naming them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from plantwire_platform.database import migrate
from tests.platform.commands import platform_command
from tests.platform.identities import person, served

ZH = {"Accept-Language": "zh-CN"}
SITE_A = {"code": "A", "name": "Plant A", "edge_node": "GW-A"}
SITE_B = {"code": "B", "name": "Plant B", "edge_node": "GW-B"}


@pytest.fixture
async def hxp(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, str, dict[str, str]]]:
    """Enterprise HXP with sites A (gateway GW-A) and B (GW-B), and its admin's headers."""
    async with served(database_url) as client:
        root = await person(client, database_url, "root", "platform_admin")
        made = await client.post(
            "/api/v1/enterprises",
            json={"code": "HXP", "uscc": "91320500000000001X", "name": "HXP Co."},
            headers=root,
        )
        assert made.status_code == 201, made.text
        ent = made.json()["enterprise_id"]
        admin = await person(client, database_url, "hxp-admin", "enterprise_admin", ent)
        base = f"/api/v1/enterprises/{ent}"
        for site in (SITE_A, SITE_B):
            got = await client.post(f"{base}/sites", json=site, headers=admin)
            assert got.status_code == 201, got.text
        yield client, base, admin


def sites(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT x.code, s.code, s.edge_node_id FROM site s"
            " JOIN enterprise x ON x.id = s.enterprise_id ORDER BY 1, 2"
        ).fetchall()


REGISTERED = [("HXP", "A", "GW-A"), ("HXP", "B", "GW-B")]


async def test_a_site_cannot_take_the_gateway_of_another_site(
    hxp: tuple[httpx.AsyncClient, str, dict[str, str]], database_url: str
) -> None:
    client, base, admin = hxp
    taken = {"code": "C", "name": "Plant C", "edge_node": "GW-A"}
    got = await client.post(f"{base}/sites", json=taken, headers=admin)
    assert (got.status_code, got.json()["error"]) == (409, "conflict")
    assert got.json()["detail"] == (
        "edge_node: 'GW-A' is the gateway of site A already (one gateway reads one site)"
    )
    got = await client.post(f"{base}/sites", json=taken, headers={**admin, **ZH})
    assert got.json()["detail"] == "edge_node：'GW-A' 已是站点 A 的网关（一个网关只读取一个站点）"
    got = await client.patch(f"{base}/sites/B", json={"edge_node": "GW-A"}, headers=admin)
    assert (got.status_code, got.json()["error"]) == (409, "conflict")
    assert "'GW-A' is the gateway of site A already" in got.json()["detail"]
    dup = await client.post(f"{base}/sites", json={**SITE_B, "edge_node": "GW-C"}, headers=admin)
    assert (dup.status_code, dup.json()["detail"]) == (409, "code: site B exists already")
    assert sites(database_url) == REGISTERED
    # a site keeps its own gateway (another enterprise may name its own alike: the database
    # test below)
    same = await client.patch(f"{base}/sites/A", json={"edge_node": "GW-A"}, headers=admin)
    assert same.status_code == 200, same.text


async def test_a_document_naming_a_code_or_gateway_twice_is_refused_naming_both(
    hxp: tuple[httpx.AsyncClient, str, dict[str, str]], database_url: str
) -> None:
    client, base, admin = hxp
    head = 'code = "HXP"\nuscc = "91320500000000001X"\nname = "HXP Co."\n'
    site_a = '[[sites]]\ncode = "A"\nname = "Plant A"\nedge_node = "GW-A"\n'
    site_c = '[[sites]]\ncode = "C"\nname = "Plant C"\nedge_node = "GW-A"\n'
    toml = {**admin, "Content-Type": "application/toml"}

    async def refused(document: str, headers: dict[str, str] = toml) -> tuple[int, str, str]:
        got = await client.put(f"{base}/registry", content=document, headers=headers)
        return got.status_code, got.json()["error"], got.json()["detail"]

    assert await refused(head + site_a + site_c) == (
        422,
        "invalid_request",
        "<body>: sites[1].edge_node: edge node 'GW-A' is also that of sites[0] (site A): "
        "one gateway reads one site",
    )
    assert (await refused(head + site_a + site_c, {**toml, **ZH}))[2] == (
        "<body>: sites[1].edge_node: 边缘节点 'GW-A' 与 sites[0]（站点 A）重复："
        "一个网关只读取一个站点"
    )
    assert (await refused(head + site_a + site_a.replace("GW-A", "GW-X")))[2] == (
        "<body>: sites[1].code: site code 'A' is also that of sites[0] (enterprise HXP)"
    )
    line = '[[sites.lines]]\ncode = "L1"\nname = "Line"\n'
    steps = 'processes = [{ code = "OP10", name = "Turn" }, { code = "OP10", name = "Mill" }]\n'
    assert (await refused(head + site_a + line + steps))[2] == (
        "<body>: sites[0].lines[0].processes[1].code: process step code 'OP10' is also that of "
        "processes[0] (line L1)"
    )
    assert (await refused(head + site_a + line + line))[2] == (
        "<body>: sites[0].lines[1].code: line code 'L1' is also that of lines[0] (site A)"
    )
    machine = (
        '[[sites.equipment]]\ncode = "M1"\nname = "Lathe"\nline = "L1"\ncontrol_type = "CNC"\n'
        "declared_nc = true\n"
    )
    assert (await refused(head + site_a + line + machine + machine, {**toml, **ZH}))[2] == (
        "<body>: sites[0].equipment[1].code: 设备代码 'M1' 与 equipment[0] 重复（站点 A）"
    )
    # one site new, with the gateway of registered site A, which the document leaves as it is
    assert await refused(head + site_c) == (
        409,
        "conflict",
        "sites[0].edge_node: edge node 'GW-A' is the gateway of site A already, which this "
        "document leaves as it is: one gateway reads one site",
    )
    assert sites(database_url) == REGISTERED
    # a document that gives both sites each other's gateway is one change: the sites swap
    swap = site_a.replace("GW-A", "GW-B") + site_c.replace('"C"', '"B"')
    got = await client.put(f"{base}/registry", content=head + swap, headers=toml)
    assert got.status_code == 200, got.text
    assert sites(database_url) == [("HXP", "A", "GW-B"), ("HXP", "B", "GW-A")]


async def test_the_database_holds_one_gateway_per_site_of_an_enterprise(
    database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "INSERT INTO enterprise (code, uscc, name) VALUES ('G1', '91320500000000002X', 'G'),"
            " ('G2', '91320500000000003X', 'G') RETURNING id"
        )
        one, two = [row[0] for row in await cur.fetchall()]
        await conn.commit()
        insert = (
            "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id)"
            " VALUES (%s, %s, 'Site', 'UTC', 'GW')"
        )
        await conn.execute(insert, (one, "S1"))
        await conn.execute(insert, (two, "S1"))  # another group: another gateway
        await conn.commit()
        await conn.execute(insert, (one, "S2"))
        with pytest.raises(psycopg.errors.UniqueViolation, match="site_edge_node_unique"):
            await conn.commit()  # checked when the transaction commits (a swap may pass)


async def cli(url: str, *args: str) -> tuple[int, str]:
    """``plantwire platform <args>`` against the database at ``url``: exit code and output."""
    return await platform_command(url, *args)


SITE = """
[[enterprises.sites]]
code = "A"
name = "Plant A"
edge_node = "GW-A"
"""
ENTERPRISE = (
    """
[[enterprises]]
code = "HXP"
uscc = "91320500000000001X"
name = "HXP Co."
"""
    + SITE
)


async def test_the_command_line_refuses_the_same_way(database_url: str, tmp_path: Path) -> None:
    twice = tmp_path / "twice.toml"
    twice.write_text(ENTERPRISE + SITE.replace('"A"', '"B"'))
    code, out = await cli(database_url, "registry", "import", str(twice))
    assert code == 2, out
    assert f"{twice}: enterprises[0].sites[1].edge_node: edge node 'GW-A' is also that of " in out
    assert sites(database_url) == []
    first = tmp_path / "first.toml"
    first.write_text(ENTERPRISE)
    code, out = await cli(database_url, "registry", "import", str(first))
    assert code == 0, out
    later = tmp_path / "later.toml"  # site C with A's gateway; A is left out
    later.write_text(ENTERPRISE.replace('"A"', '"C"'))
    code, out = await cli(database_url, "registry", "import", str(later))
    assert code == 2 and "nothing written" in out, out
    assert (
        f"{later}: enterprises[0].sites[0].edge_node: edge node 'GW-A' is the gateway of "
        "site A already" in out
    )
    site = '{"code": "C", "name": "Plant C", "edge_node": "GW-A"}'
    code, out = await cli(database_url, "registry", "add", "HXP", "site", "-", site)
    assert code == 2 and "nothing written" in out, out
    assert "edge_node: 'GW-A' is the gateway of site A already (one gateway reads one site)" in out
    assert sites(database_url) == [("HXP", "A", "GW-A")]


async def test_the_migration_stops_on_sites_sharing_a_gateway_and_names_them(
    database_url: str,
) -> None:
    """A database migrated before the rule, holding two sites of one enterprise with one edge
    node: the migration names them and changes nothing; once one has its own, it runs."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE site DROP CONSTRAINT site_edge_node_unique")
        conn.execute("DELETE FROM schema_migration WHERE version = 97")
        (ent,) = conn.execute(
            "INSERT INTO enterprise (code, uscc, name) VALUES ('OLD', '91320500000000004X', 'O')"
            " RETURNING id"
        ).fetchone() or (0,)
        ids = [
            conn.execute(
                "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id)"
                " VALUES (%s, %s, 'Site', 'UTC', 'GW') RETURNING id",
                (ent, code),
            ).fetchone()
            for code in ("S1", "S2")
        ]
    code, out = await cli(database_url, "migrate")
    assert code == 2, out
    s1, s2 = (row[0] for row in ids if row is not None)
    assert (
        "sites of one enterprise share an edge node (one gateway reads one site): "
        f"enterprise OLD, edge node GW: sites S1 (id {s1}), S2 (id {s2})" in out
    )
    assert "hint: give one site of each its own edge node" in out
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM schema_migration WHERE version = 97").fetchall() == []
        conn.execute("UPDATE site SET edge_node_id = 'GW2' WHERE id = %s", (s2,))
    assert await migrate(database_url) == [97]
