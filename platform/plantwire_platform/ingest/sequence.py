"""Sparkplug ``seq`` gap detection that tolerates reordering between workers.

Every message of an edge node after its NBIRTH carries ``seq`` = previous + 1 (mod 256). One
worker reading a node's stream in order sees a gap at once; workers sharing a subscription
each see a part, and merge what they saw into one :class:`Ledger` per node (kept in the
database). The ledger holds the next expected seq and a 128-bit window of seqs already seen
beyond it; a hole in that window that outlives ``wait_s`` is a gap. The timer starts when a
seq is first seen beyond a missing one, and again when that hole closes while seqs beyond
another one wait (even within one batch), so a late seq never shortens the next hole's wait.
After a gap the ledger skips past it, so one gap asks for one rebirth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW = 128

SeqEntry = tuple[int | None, int | None, bool]
"""(NBIRTH timestamp the message follows, its seq, whether it is the NBIRTH itself)."""


@dataclass(frozen=True, slots=True)
class Ledger:
    birth_ts: int | None = None  # the NBIRTH whose stream this follows
    expected: int | None = None  # None: take the next seq seen as the start
    ahead: int = 0  # bit d set: seq (expected + d) % 256 seen, 1 <= d < WINDOW
    hole_since: float | None = None  # when a seq was first seen beyond a missing one


def reset(birth_ts: int, seq: int | None) -> Ledger:
    """The ledger right after an NBIRTH with ``seq``."""
    return Ledger(birth_ts, None if seq is None else (seq + 1) % 256)


def merge(
    ledger: Ledger, birth_ts: int | None, seqs: list[int], now: float, wait_s: float
) -> tuple[Ledger, bool]:
    """Add ``seqs`` (in the order received) of messages sent after the NBIRTH ``birth_ts``.

    Returns the new ledger and whether a gap was found. Seqs of an older birth are ignored;
    a newer birth than the ledger knows restarts it.
    """
    if birth_ts is not None and ledger.birth_ts != birth_ts:
        if ledger.birth_ts is not None and birth_ts < ledger.birth_ts:
            return ledger, False
        ledger = Ledger(birth_ts)
    expected, ahead, hole_since = ledger.expected, ledger.ahead, ledger.hole_since
    filled = False  # the hole the timer was started for is closed
    for seq in seqs:
        if expected is None:
            expected = (seq + 1) % 256
            continue
        distance = (seq - expected) % 256
        if distance == 0:
            filled = filled or bool(ahead)
            expected = (expected + 1) % 256
            ahead >>= 1
            while ahead & 1:
                expected = (expected + 1) % 256
                ahead >>= 1
        elif distance < WINDOW:
            ahead |= 1 << distance
        # else: behind the window - a duplicate or a straggler, nothing to learn
    gap = False
    if ahead:
        if hole_since is None or filled:  # a hole left after another one closed gets the
            hole_since = now  # whole wait from now: never asked about early, at worst late
        if now - hole_since >= wait_s:
            assert expected is not None
            expected = (expected + ahead.bit_length()) % 256
            ahead, hole_since, gap = 0, None, True
    else:
        hole_since = None
    followed = ledger.birth_ts if birth_ts is None else birth_ts
    return Ledger(followed, expected, ahead, hole_since), gap


def replay(
    ledger: Ledger, entries: Sequence[SeqEntry], now: float, wait_s: float
) -> tuple[Ledger, int]:
    """Apply a node's entries in the order received: NBIRTHs restart the ledger (unless older
    than the one it follows), runs of other seqs are merged. Returns the ledger and the number
    of gaps found. No entries: whether a hole has outlived ``wait_s`` by ``now`` (the reorder
    timer run out while the node sent nothing more)."""
    if not entries:
        ledger, gap = merge(ledger, None, [], now, wait_s)
        return ledger, int(gap)
    gaps = 0
    run: list[int] = []
    run_birth: int | None = None

    def flush() -> None:
        nonlocal ledger, gaps
        if run:
            ledger, gap = merge(ledger, run_birth, run, now, wait_s)
            gaps += gap
            run.clear()

    for birth_ts, seq, is_birth in entries:
        if is_birth:
            flush()
            if birth_ts is not None and (ledger.birth_ts is None or birth_ts >= ledger.birth_ts):
                ledger = reset(birth_ts, seq)
        elif seq is not None:
            if run and birth_ts != run_birth:
                flush()
            run_birth = birth_ts
            run.append(seq)
    flush()
    return ledger, gaps
