"""The registry: enterprises, sites, lines, process steps, equipment, parks and chains.

Owns the registry tables and the registry file format (:mod:`.document`, ``docs/registry.md``);
:mod:`.store` writes a document with the history of the facts indicators depend on,
:mod:`.queries` and :mod:`.groups` read it. Imports the bus and
:mod:`plantwire_platform.indicators.shift_calendar` (to validate shift specs) only.
"""
