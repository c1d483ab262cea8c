"""plantwire_platform: the platform service.

One sub-package per capability, each saying in its docstring what it owns and may import:

* :mod:`.registry`: enterprises, sites, lines, processes, equipment, parks, chains;
* :mod:`.ingest`: the Sparkplug host application and the storage writer;
* :mod:`.storage`: partitions, packing and retention of the sample tables;
* :mod:`.indicators`: formulas, windows, roll-ups and report bodies;
* :mod:`.api`: ``/api/v1``;
* :mod:`.partner`: the partner data interface.

Shared infrastructure sits beside them: :mod:`.settings`, :mod:`.database` (connections and
migrations, in ``migrations/``), :mod:`.services` (finding or starting PostgreSQL and a
broker), :mod:`.batching`, :mod:`.errors`; :mod:`.server` assembles the HTTP application and
:mod:`.cli` the ``plantwire platform`` command. The platform imports only the bus.

Its source folder is ``platform/``, deliberately a plain folder without ``__init__.py``: a
package named ``platform`` would shadow the standard library module of that name.
"""
