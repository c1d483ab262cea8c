"""``/api/v1``: the registry and the indicators over HTTP.

Owns the routes (:mod:`.routes`), the checked window of an indicator request
(:mod:`.window`), and the response bodies (:mod:`.schemas`). Imports the bus,
:mod:`plantwire_platform.accounts` (who may read what),
:mod:`plantwire_platform.registry`, :mod:`plantwire_platform.indicators`,
:mod:`plantwire_platform.gateways` (gateways' broker logins, :mod:`.gateways`),
:mod:`plantwire_platform.settings`, :mod:`plantwire_platform.errors`,
:mod:`plantwire_platform.workload`, :mod:`plantwire_platform.workers`,
:mod:`plantwire_platform.translation` (the words of its error details) and
:mod:`plantwire_platform.problems` (validation problems, worded); the server
(:mod:`plantwire_platform.server`) mounts it.
"""
