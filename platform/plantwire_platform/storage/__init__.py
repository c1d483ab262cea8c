"""Storage upkeep: sample partitions ahead of time, old days packed, retention.

Used by the migrations and the ingest worker's maintenance loop; imports nothing else of the
platform but :mod:`plantwire_platform.connections` (its own connection).
"""
