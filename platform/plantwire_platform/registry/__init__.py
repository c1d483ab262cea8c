"""The registry: enterprises, sites, lines, process steps, equipment, parks and chains.

Owns the registry tables and the registry file format (:mod:`.document`, ``docs/registry.md``);
:mod:`.store` writes a document with the history of the facts indicators depend on,
:mod:`.queries` and :mod:`.groups` read it, :mod:`.export` reads an enterprise back as a
document, :mod:`.sheet` is its equipment as CSV, :mod:`.chains` and :mod:`.registrations` the
chains leaders build by invitation and the parks and regions enterprises join by consent, with
their history,
:mod:`.commands` the command line's export and sheet import. Imports the bus,
:mod:`plantwire_platform.indicators.shift_calendar` (to validate shift specs),
:mod:`plantwire_platform.translation` (its problems in the API catalogue's words) and
:mod:`plantwire_platform.problems` (a document's validation problems, worded) and
:mod:`plantwire_platform.connections` (the command line's connection) only.
"""
