"""The partner data interface: what suppliers grant to partners, under audit.

Owns API clients and the verification of their tokens on every call (:mod:`.tokens`), the
catalog (:mod:`.catalog`), grants and their lifecycle (:mod:`.grants`), the access decision
(:mod:`.access`), scoped data queries (:mod:`.data`), audit recording (:mod:`.audit`) and the
keyed audit chain with its verification and signed heads (:mod:`.audit_chain`), request limits
(:mod:`.limits`), the routes (:mod:`.identity`, :mod:`.admin`, :mod:`.feed`, :mod:`.stream`,
:mod:`.webhooks`, sharing :mod:`.context`, whose route class audits every request), webhook
delivery (:mod:`.delivery`) and the router with its background tasks (:mod:`.interface`).
Token verification and audit recording assume nothing of partners but the column and role
names, so other APIs can put their routes behind them. Imports the bus,
:mod:`plantwire_platform.indicators`, :mod:`plantwire_platform.errors`,
:mod:`plantwire_platform.batching`, the settings, and the workers and workload its heavier
indicator computations share with ``/api/v1``, and :mod:`plantwire_platform.translation`
(the words of its error details), and :mod:`plantwire_platform.connections` (its pool).
"""
