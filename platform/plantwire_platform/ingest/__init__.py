"""The ingest: the Sparkplug host application and the storage writer.

Owns the Sparkplug host logic (:mod:`.host`: topics, births, deaths, alias resolution; no I/O),
which senders are registered (:mod:`.admission`), the shared host state of all workers
(:mod:`.shared_state`), turning messages into batches
(:mod:`.intake`), seq gap detection (:mod:`.sequence`), database writes (:mod:`.batch`,
:mod:`.writer`), the worker process (:mod:`.worker`) and its metrics (:mod:`.metrics`).
Imports the bus, :mod:`plantwire_platform.settings`, :mod:`plantwire_platform.storage` and
:mod:`plantwire_platform.connections` (the worker's connections).
"""
