"""The partner catalog: datasets an enterprise offers, and who may see each entry.

Seeing an entry is separate from its terms: a dataset is visible to its own enterprise, to
everyone when public, and to any enterprise holding a grant on it; 'chain' entries also to the
leaders of the owner's industrial chains, or (if the owner chooses ``chain_audience`` 'members')
to every enterprise sharing a chain with it; 'private' entries are seen by the owner and
grantees only.
"""

from __future__ import annotations

from typing import Any, Literal

from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from plantwire_platform.translation import Text

Kind = Literal["indicators", "states", "counts", "alarms", "telemetry"]
Grade = Literal["core", "important", "general"]
Granularity = Literal["raw", "aggregated"]
Visibility = Literal["private", "chain", "public"]
ChainAudience = Literal["leader", "members"]

_COLUMNS = (
    "d.id, d.enterprise_id, d.code, d.title, d.kind, d.domain, d.grade, d.granularity,"
    " d.purposes, d.visibility, d.chain_audience,"
    " (SELECT x.name FROM enterprise x WHERE x.id = d.enterprise_id)"
)


def visible_to(ent: str, admin: str = "false") -> str:
    """The condition that dataset ``d`` is visible to the enterprise given by the SQL
    expression ``ent`` (``admin``: an SQL boolean, true for a platform admin)."""
    return f"""({admin} OR d.enterprise_id = {ent} OR d.visibility = 'public'
 OR (d.visibility = 'chain' AND EXISTS (
      SELECT 1 FROM chain c
      WHERE (c.leader_id = {ent} OR (d.chain_audience = 'members' AND EXISTS (
               SELECT 1 FROM chain_member m WHERE m.chain_id = c.id AND m.enterprise_id = {ent})))
        AND (c.leader_id = d.enterprise_id OR EXISTS (
               SELECT 1 FROM chain_member m
               WHERE m.chain_id = c.id AND m.enterprise_id = d.enterprise_id))))
 OR EXISTS (SELECT 1 FROM partner_grant g WHERE g.dataset_id = d.id AND g.partner_id = {ent}))"""


# Placeholders: %(ent)s the caller's enterprise (NULL for a platform admin), %(admin)s.
VISIBLE = visible_to("%(ent)s", "%(admin)s")


class DatasetIn(BaseModel):
    """A dataset an enterprise admin adds to its catalog."""

    code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    title: str = Field(min_length=1, max_length=200)
    kind: Kind
    domain: str = Field(min_length=1, max_length=64, description="data domain, e.g. production")
    grade: Grade
    granularity: Granularity = Field(description="finest granularity offered")
    purposes: list[str] = Field(min_length=1, max_length=20)
    visibility: Visibility = "chain"
    chain_audience: ChainAudience = Field(
        default="leader",
        description="who 'chain' visibility shows the dataset to: the leaders of the owner's "
        "chains, or every member of them",
    )


class Dataset(DatasetIn):
    id: int
    enterprise_id: int
    enterprise_name: str = Field(description="the offering enterprise's name")


class DatasetPage(BaseModel):
    items: list[Dataset]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


def terms_error(d: DatasetIn) -> Text | None:
    """Why a dataset's terms are inconsistent, or None."""
    if d.granularity == "raw" and d.grade != "general":
        return Text("dataset.raw_grade")
    if d.kind == "indicators" and d.granularity == "raw":
        return Text("dataset.indicators_raw")
    if any(not p or len(p) > 64 for p in d.purposes):
        return Text("dataset.purposes")
    return None


async def create(conn: AsyncConnection[Any], enterprise_id: int, d: DatasetIn) -> Dataset | None:
    """Add a dataset (uncommitted: it commits with its audit entry); None if the enterprise
    already has one with this code."""
    cur = await conn.execute(
        "INSERT INTO partner_dataset (enterprise_id, code, title, kind, domain, grade,"
        " granularity, purposes, visibility, chain_audience)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (enterprise_id, code) DO NOTHING RETURNING id,"
        " (SELECT x.name FROM enterprise x WHERE x.id = partner_dataset.enterprise_id)",
        (
            enterprise_id,
            d.code,
            d.title,
            d.kind,
            d.domain,
            d.grade,
            d.granularity,
            d.purposes,
            d.visibility,
            d.chain_audience,
        ),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Dataset(id=row[0], enterprise_id=enterprise_id, enterprise_name=row[1], **d.model_dump())


async def visible(
    conn: AsyncConnection[Any], enterprise_id: int | None, dataset_id: int
) -> Dataset | None:
    """The dataset if the caller may see it."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM partner_dataset d WHERE d.id = %(id)s AND {VISIBLE}",
        {"id": dataset_id, "ent": enterprise_id, "admin": enterprise_id is None},
    )
    row = await cur.fetchone()
    return _dataset(row) if row else None


async def listing(
    conn: AsyncConnection[Any],
    enterprise_id: int | None,
    after: int,
    limit: int,
    filters: dict[str, Any],
) -> list[Dataset]:
    """Visible datasets with id > ``after``, filtered by equality on the given columns."""
    where = "".join(
        f" AND d.{col} = %({col})s"
        for col in ("enterprise_id", "kind", "grade", "domain")
        if filters.get(col) is not None
    )
    if filters.get("purpose") is not None:
        where += " AND %(purpose)s = ANY(d.purposes)"
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM partner_dataset d WHERE d.id > %(after)s AND {VISIBLE}{where}"
        " ORDER BY d.id LIMIT %(limit)s",
        {
            **filters,
            "after": after,
            "limit": limit,
            "ent": enterprise_id,
            "admin": enterprise_id is None,
        },
    )
    return [_dataset(r) for r in await cur.fetchall()]


def _dataset(row: tuple[Any, ...]) -> Dataset:
    keys = (
        "id",
        "enterprise_id",
        "code",
        "title",
        "kind",
        "domain",
        "grade",
        "granularity",
        "purposes",
        "visibility",
        "chain_audience",
        "enterprise_name",
    )
    return Dataset(**dict(zip(keys, row, strict=True)))
