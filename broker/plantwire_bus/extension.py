"""plantwire's extensions beside Sparkplug B 3.0 (documented in docs/reliability.md).

All are invisible to a third-party host or edge node, which keeps working by the letter of
the specification:

* **Ordinal.** The n-th value of one metric within one millisecond (n >= 1; the first one has
  none) carries the metric property :data:`ORDINAL` (UInt32). The platform stores it n
  microseconds after its millisecond, so several values within a millisecond are all kept,
  in their order, and a replayed message still maps every value to the same key.
* **Committed watermark.** A plantwire host says in its STATE payload that it confirms
  commits (``"commits": 1`` beside ``online`` and ``timestamp``), and after each database
  commit publishes, per edge node, which data messages it committed on
  ``plantwire/v1/committed/{group_id}/{edge_node_id}``: the NBIRTH timestamp of the session
  they belong to and their ``seq`` numbers. A plantwire edge node deletes a message's values
  from its buffer only then; with a host that does not say so it falls back to the broker's
  PUBACK.
* **Clock rate.** A plantwire edge node's NBIRTH carries the metric :data:`CLOCK_RATE`
  (Double): how many milliseconds of the clock it stamps with pass per wall millisecond (1 on
  a real plant; a simulator's speed when the gateway follows simulated time). A host stamps
  the node's NDEATH, a Will published by the broker included, on the node's own time line with
  it (``docs/indicators.md``, the time line); a node without it is stamped as by any host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from plantwire_bus.payload import MAX_ORDINAL, ORDINAL, PayloadError

__all__ = ["MAX_ORDINAL", "ORDINAL"]  # defined beside the metric that carries it
COMMIT_NAMESPACE = "plantwire/v1/committed"
CLOCK_RATE = "Clock/Rate"  # NBIRTH metric (Double): node clock ms per wall ms
COMMITS_KEY = "commits"  # in the STATE payload of a host that confirms commits


def committed_topic(group_id: str, edge_node_id: str) -> str:
    return f"{COMMIT_NAMESPACE}/{group_id}/{edge_node_id}"


def parse_committed_topic(topic: str) -> tuple[str, str] | None:
    """(group_id, edge_node_id) of a commit topic, None for any other topic."""
    prefix = COMMIT_NAMESPACE + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


@dataclass(frozen=True, slots=True)
class Committed:
    """Data messages of one edge node session that the host has committed."""

    birth_ts: int  # the NBIRTH timestamp of the session (seq restarts with every NBIRTH)
    seqs: tuple[int, ...]

    def encode(self) -> bytes:
        return json.dumps({"birth": self.birth_ts, "seqs": list(self.seqs)}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Committed:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"commit confirmation is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise PayloadError("commit confirmation must be a JSON object")
        birth, seqs = doc.get("birth"), doc.get("seqs")
        if not isinstance(birth, int) or isinstance(birth, bool) or birth < 0:
            raise PayloadError(f"commit confirmation: bad 'birth' {birth!r}")
        if not isinstance(seqs, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 255 for s in seqs
        ):
            raise PayloadError("commit confirmation: 'seqs' must be a list of 0..255")
        return cls(birth, tuple(seqs))


def confirms_commits(state: bytes) -> bool:
    """Whether a STATE payload comes from a host that publishes commit confirmations."""
    try:
        doc = json.loads(state)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and doc.get(COMMITS_KEY) == 1
