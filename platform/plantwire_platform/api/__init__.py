"""``/api/v1``: the registry and the indicators over HTTP.

Owns the routes (:mod:`.routes`) and their response bodies (:mod:`.schemas`). Imports the bus,
:mod:`plantwire_platform.registry`, :mod:`plantwire_platform.indicators` and
:mod:`plantwire_platform.errors`; the server (:mod:`plantwire_platform.server`) mounts it.
"""
