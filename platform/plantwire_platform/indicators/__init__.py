"""The indicators: NC rates, coverage, MDI share, networking rate and OEE.

Owns the pure, versioned formulas (:mod:`.formulas`), shift calendars and reporting buckets
(:mod:`.shift_calendar`), equipment usage from the hourly roll-up (:mod:`.usage`), an
enterprise's indicators over a window (:mod:`.enterprise`), roll-ups over groups
(:mod:`.rollup`) and the report bodies both HTTP interfaces return (:mod:`.report`).
Reads registry and telemetry tables with SQL; imports only the bus and
:mod:`plantwire_platform.translation` (a bad shift spec in the API catalogue's words).
"""
