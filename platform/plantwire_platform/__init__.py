"""plantwire_platform: Sparkplug ingest, PostgreSQL storage, registry, indicators and HTTP API.

Its source folder is ``platform/``, deliberately a plain folder without ``__init__.py``: a
package named ``platform`` would shadow the standard library module of that name.
"""
