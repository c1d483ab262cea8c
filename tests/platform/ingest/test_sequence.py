"""Seq gap detection across workers (pure): one gap gives one rebirth, reordering none."""

from __future__ import annotations

import pytest

from plantwire_platform.ingest.sequence import Ledger, merge, replay, reset

B = 1_000  # a birth timestamp


def feed(
    ledger: Ledger, batches: list[list[int]], wait_s: float = 0.0, step_s: float = 1.0
) -> tuple[Ledger, int]:
    gaps, now = 0, 0.0
    for seqs in batches:
        ledger, gap = merge(ledger, B, seqs, now, wait_s)
        gaps += gap
        now += step_s
    return ledger, gaps


@pytest.mark.parametrize(
    ("batches", "wait_s", "gaps", "expected"),
    [
        ([[1, 2, 3], [4, 5]], 0.0, 0, 6),
        ([[1, 2, 4, 5]], 0.0, 1, 6),  # 3 lost: one gap, then past it
        ([[1, 2], [4], [5, 6], [9]], 0.0, 2, 10),  # two separate losses
        ([[1, 3], [2, 4]], 5.0, 0, 5),  # another worker had 2: reordering, no gap
        ([[1, 3], [4], [5]], 1.5, 1, 6),  # 2 never comes: a gap once the wait is over
        ([[1, 2, 2, 1, 3]], 0.0, 0, 4),  # duplicates (redeliveries) teach nothing
        ([list(range(1, 256)), [0, 1, 2]], 0.0, 0, 3),  # wraps from 255 to 0
        ([[200]], 0.0, 0, 1),  # 199 behind: a straggler, not a gap
    ],
)
def test_merge(batches: list[list[int]], wait_s: float, gaps: int, expected: int) -> None:
    ledger, found = feed(reset(B, 0), batches, wait_s)
    assert (found, ledger.expected, ledger.ahead) == (gaps, expected, 0)


def test_a_gap_is_reported_once() -> None:
    ledger, gaps = feed(reset(B, 0), [[1, 3], [4, 5], [6, 7, 8]])
    assert gaps == 1 and ledger.expected == 9


def test_a_hole_after_a_closed_one_gets_the_whole_wait() -> None:
    """4 before 3 starts the timer; 3 then closes that hole in the batch that opens the next
    one (8 before 7): the new hole waits its whole time from that batch, not from 4's."""
    ledger, gap = merge(reset(B, 2), B, [4], 0.0, 1.5)
    assert not gap and ledger.hole_since == 0.0
    ledger, gap = merge(ledger, B, [3, 5, 6, 8], 1.0, 1.5)
    assert not gap and (ledger.expected, ledger.hole_since) == (7, 1.0)
    ledger, gap = merge(ledger, B, [9], 2.0, 1.5)  # 2.0 s after 4, 1.0 s after the hole
    assert not gap
    ledger, gap = merge(ledger, B, [10], 2.5, 1.5)
    assert gap and ledger.expected == 11


def test_seqs_of_an_older_birth_are_ignored_and_a_newer_one_restarts() -> None:
    ledger = reset(B, 0)
    same, gap = merge(ledger, B - 1, [7, 9], 0.0, 0.0)
    assert (same, gap) == (ledger, False)
    newer, gap = merge(ledger, B + 1, [5, 6], 0.0, 0.0)
    assert (newer.birth_ts, newer.expected, gap) == (B + 1, 7, False)


def test_birth_without_seq_adopts_the_first_seen() -> None:
    ledger, gaps = feed(reset(B, None), [[17, 18, 19]])
    assert (ledger.expected, gaps) == (20, 0)


def test_replay_applies_births_and_seqs_in_order() -> None:
    entries = [(B, 0, True), (B, 1, False), (B, 2, False), (B, 0, True), (B, 1, False)]
    ledger, gaps = replay(Ledger(), entries, 0.0, 0.0)  # a replayed hour: births come again
    assert (ledger.expected, gaps) == (2, 0)
    ledger, gaps = replay(ledger, [(B, 3, False), (B + 5, 0, True), (B + 5, 1, False)], 0.0, 0.0)
    assert (ledger.birth_ts, ledger.expected, gaps) == (B + 5, 2, 1)  # 2 lost before the rebirth
    ledger, gaps = replay(ledger, [(B, 0, True), (B + 5, 3, False)], 0.0, 0.0)  # old NBIRTH
    assert (ledger.birth_ts, gaps) == (B + 5, 1)


def test_replay_without_entries_runs_the_reorder_timer() -> None:
    """A hole opened at 10.0 with a 1.5 s timeout, and nothing more from the node: looked at
    again without entries, it is still a hole at 11.0 and a gap at 11.5; a ledger without a
    hole has nothing to report."""
    ledger, gap = merge(reset(B, 0), B, [1, 3], 10.0, 1.5)  # 2 missing
    assert (gap, ledger.hole_since) == (False, 10.0)
    same, gaps = replay(ledger, [], 11.0, 1.5)
    assert (same, gaps) == (ledger, 0)
    after, gaps = replay(ledger, [], 11.5, 1.5)
    assert (after.expected, after.ahead, after.hole_since, gaps) == (4, 0, None, 1)
    assert replay(after, [], 100.0, 1.5) == (after, 0)
