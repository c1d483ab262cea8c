"""How an indicator rolls up over a group of enterprises (a chain, a park, a region).

The official statistic for a group is the mean of its enterprises' rates; the pooled ratio
(sum of numerators over sum of denominators) is shown beside it, with the number of
enterprises that had a defined rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Share:
    """One enterprise's numerator and denominator of a rate."""

    numerator: float
    denominator: float

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator > 0 else None


@dataclass(frozen=True, slots=True)
class Rollup:
    mean: float | None  # mean of the enterprises' rates (the official statistic)
    pooled: float | None  # sum of numerators / sum of denominators
    enterprises: int  # enterprises with a defined rate


def roll_up(shares: Sequence[Share]) -> Rollup:
    values = [v for v in (s.value for s in shares) if v is not None]
    numerator = sum(s.numerator for s in shares)
    denominator = sum(s.denominator for s in shares)
    return Rollup(
        mean=sum(values) / len(values) if values else None,
        pooled=numerator / denominator if denominator > 0 else None,
        enterprises=len(values),
    )
