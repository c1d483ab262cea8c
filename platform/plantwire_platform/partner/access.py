"""The access decision of partner data calls, read from the database on every call.

One statement reads, for each call, the dataset (if the caller may see it), every grant of it to
the caller's enterprise with its effective status (an approved or active grant past
``expires_at`` reads as expired), the requested time window clamped to each grant's window, and
the supplier's data versions. Python then applies the rules
(:func:`plantwire_platform.partner.grants.decide` and the scope check).

:class:`Decider` answers the calls that arrive while it is busy with one statement for all of
them, the way :class:`~plantwire_platform.partner.audit.AuditWriter` commits their audit entries
together. Nothing is cached: each statement starts after its calls arrived, so it sees every
grant change committed before them, and a revocation fails the very next call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from plantwire_platform.batching import Batcher, Unavailable
from plantwire_platform.partner import grants
from plantwire_platform.partner.catalog import visible_to
from plantwire_platform.partner.tokens import Caller
from plantwire_platform.translation import Text

_DECIDE = f"""
SELECT r.n, d.id, d.enterprise_id, d.kind, d.grade, d.granularity,
       g.id, g.purpose,
       {grants.effective_status("g")},
       g.site_ids, g.equipment_ids, g.fields, g.window_start, g.window_end,
       greatest(r.lo, g.window_start), least(r.hi, g.window_end), g.granularity,
       coalesce(v.version, 0), coalesce(x.version, 0)
FROM unnest(%(n)s::integer[], %(dataset)s::bigint[], %(ent)s::bigint[], %(pin)s::bigint[],
            %(lo)s::timestamptz[], %(hi)s::timestamptz[]) AS r(n, dataset, ent, pin, lo, hi)
JOIN partner_dataset d ON d.id = r.dataset AND {visible_to("r.ent")}
LEFT JOIN partner_grant g ON g.dataset_id = d.id AND g.partner_id = r.ent
     AND d.enterprise_id <> r.ent AND (r.pin IS NULL OR g.id = r.pin)
LEFT JOIN partner_data_version v ON v.enterprise_id = d.enterprise_id
LEFT JOIN partner_data_version x ON x.enterprise_id = 0
ORDER BY r.n, g.id DESC NULLS LAST
"""


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """What the decision needs of a dataset."""

    id: int
    enterprise_id: int
    kind: str
    grade: str
    granularity: str


@dataclass(frozen=True, slots=True)
class GrantScope:
    """The grant that allows a read, as the decision saw it."""

    id: int
    purpose: str
    status: str
    site_ids: list[int] | None
    equipment_ids: list[int] | None
    fields: list[str] | None
    window_start: datetime | None
    window_end: datetime | None
    start: datetime | None  # the requested window clamped to the grant's (in SQL)
    end: datetime | None
    granularity: str


@dataclass(frozen=True, slots=True)
class Access:
    """An allowed read: the dataset, the grant (None: the enterprise's own data), the requested
    window clamped to the grant's, and the supplier's data versions (its own, the registry's)."""

    dataset: DatasetRef
    grant: GrantScope | None
    start: datetime | None
    end: datetime | None
    versions: tuple[int, int]

    @property
    def grant_id(self) -> int | None:
        return self.grant.id if self.grant else None

    @property
    def granularity(self) -> str:
        """The granularity of what may be read: the grant's, or the dataset's own."""
        return self.grant.granularity if self.grant else self.dataset.granularity


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused read: HTTP status, reason code, detail, and what is known for the audit."""

    status: int
    reason: str
    detail: Text
    supplier_id: int | None = None
    grant_id: int | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """One call's question: may enterprise ``ent`` read ``dataset`` (over [lo, hi), clamped to
    the grant's window), through grant ``pin`` only if given?"""

    dataset: int
    ent: int
    pin: int | None
    lo: datetime | None
    hi: datetime | None


class DecisionUnavailable(Unavailable):
    """The decision could not be read from the database."""


async def fetch(
    conn: AsyncConnection[Any], questions: list[Question]
) -> list[list[tuple[Any, ...]]]:
    """For each question, its rows (one per grant, or one without a grant; none when the
    dataset is not visible), in one statement."""
    cur = await conn.execute(
        _DECIDE,
        {
            "n": list(range(len(questions))),
            "dataset": [q.dataset for q in questions],
            "ent": [q.ent for q in questions],
            "pin": [q.pin for q in questions],
            "lo": [q.lo for q in questions],
            "hi": [q.hi for q in questions],
        },
    )
    answers: list[list[tuple[Any, ...]]] = [[] for _ in questions]
    for row in await cur.fetchall():
        answers[row[0]].append(row[1:])
    return answers


class Decider(Batcher[Question, list[tuple[Any, ...]]]):
    """Reads the decisions of concurrent calls together: each caller of :meth:`submit` waits for
    the statement that carries its question; questions that arrive while one statement runs go
    in the next. A statement that fails is retried question by question, so one call's bad
    input does not fail the others."""

    name = "decider"
    isolate = True
    unavailable = DecisionUnavailable
    max_batch = 500

    async def process(
        self, conn: AsyncConnection[Any], items: list[Question]
    ) -> list[list[tuple[Any, ...]]]:
        return await fetch(conn, items)


async def decide(
    decider: Decider,
    caller: Caller,
    dataset_id: int,
    kind: str,
    purpose: str,
    scope: dict[str, Any],
    window: tuple[datetime | None, datetime | None] | None = None,
    grant_id: int | None = None,
) -> Access | Denial:
    """May ``caller`` read ``dataset_id`` (of ``kind``) for ``purpose`` within ``scope`` (keys
    sites, equipment, fields, start, end as requested; None = not narrowed)? ``window`` is the
    time window to clamp to the grant's (default: the requested start and end); ``grant_id``
    limits the decision to that one grant (a webhook lives and dies with its grant)."""
    if caller.enterprise_id is None:
        return Denial(403, "role_forbidden", Text("access.platform_admin"))
    start, end = window if window is not None else (scope.get("start"), scope.get("end"))
    question = Question(dataset_id, caller.enterprise_id, grant_id, start, end)
    return verdict(await decider.submit(question), question, kind, purpose, scope)


def verdict(
    rows: list[tuple[Any, ...]],
    question: Question,
    kind: str,
    purpose: str,
    scope: dict[str, Any],
) -> Access | Denial:
    """The rules applied to the rows read for one call."""
    if not rows or rows[0][2] != kind:
        return Denial(404, "not_found", Text("access.no_dataset", kind=kind, id=question.dataset))
    first = rows[0]
    d = DatasetRef(*first[:5])
    versions = (int(first[16]), int(first[17]))
    if d.enterprise_id == question.ent:
        return Access(d, None, question.lo, question.hi, versions)
    if d.grade == "core":
        return Denial(403, "grade_forbidden", Text("access.core"), d.enterprise_id)
    held = [GrantScope(*r[5:16]) for r in rows if r[5] is not None]
    candidates = [grants.Candidate(g.id, g.purpose, g.status, g.status == "expired") for g in held]
    allowed, reason = grants.decide(candidates, purpose)
    if allowed is None:
        why = reason or "no_grant"
        text = Text("access.purpose", reason=why, purpose=purpose)
        return Denial(403, why, text, d.enterprise_id, question.pin)
    g = next(g for g in held if g.id == allowed)
    problem = outside(g, scope)
    if problem:
        return Denial(403, "out_of_scope", problem, d.enterprise_id, g.id)
    return Access(d, g, g.start, g.end, versions)


def outside(g: GrantScope, scope: dict[str, Any]) -> Text | None:
    """What part of the request lies outside the grant (None if none)."""
    for name, granted in (
        ("sites", g.site_ids),
        ("equipment", g.equipment_ids),
        ("fields", g.fields),
    ):
        asked = scope.get(name)
        if asked is not None and granted is not None and not set(asked) <= set(granted):
            return Text(f"access.outside.{name}")
    start, end = scope.get("start"), scope.get("end")
    if start is not None and g.window_start is not None and start < g.window_start:
        return Text("access.before_window")
    if end is not None and g.window_end is not None and end > g.window_end:
        return Text("access.after_window")
    return None
