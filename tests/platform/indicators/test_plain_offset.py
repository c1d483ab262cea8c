"""Times parsed by the API (pydantic's fixed-offset time zone) are computed with the standard
library's: the same instant and offset, printed the same; named zones and the standard
library's own offsets pass unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from plantwire_platform.indicators.enterprise import plain_offset


def test_parsed_offsets_become_the_standard_librarys() -> None:
    for text in ("2026-11-06T23:31:00Z", "2026-11-06T23:31:00+05:45", "2026-11-06T08:00:00-03:30"):
        parsed = TypeAdapter(datetime).validate_python(text)
        assert not isinstance(parsed.tzinfo, timezone)  # what FastAPI hands over
        plain = plain_offset(parsed)
        assert isinstance(plain.tzinfo, timezone)
        assert plain == parsed and plain.utcoffset() == parsed.utcoffset()
        assert plain.isoformat() == parsed.isoformat()
        assert plain.replace(minute=0) == parsed.replace(minute=0)  # hours fall alike


def test_named_zones_and_standard_offsets_pass_unchanged() -> None:
    named = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    fixed = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=8)))
    utc = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    for t in (named, fixed, utc):
        assert plain_offset(t) is t
