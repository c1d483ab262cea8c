"""The partner data interface: what suppliers grant to partners, under audit.

Owns API clients and tokens (:mod:`.tokens`), the catalog (:mod:`.catalog`), grants and their
lifecycle (:mod:`.grants`), the access decision (:mod:`.access`), scoped data queries
(:mod:`.data`), the audit log (:mod:`.audit`), rate limits (:mod:`.limits`), the routes
(:mod:`.admin`, :mod:`.feed`, :mod:`.stream`, :mod:`.webhooks`, sharing :mod:`.context`),
webhook delivery (:mod:`.delivery`) and the router with its background tasks
(:mod:`.interface`). Imports the bus, :mod:`plantwire_platform.indicators`,
:mod:`plantwire_platform.errors`, :mod:`plantwire_platform.batching` and the settings.
"""
