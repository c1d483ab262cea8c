"""plantwire: the composition root.

The ``plantwire`` command (:mod:`plantwire.cli`) and ``plantwire demo`` (:mod:`plantwire.demo`)
are the only code that imports every package: the wire contract (``plantwire_bus``), the
simulators (``plantwire_sim``), the edge gateway (``plantwire_edge``) and the platform
(``plantwire_platform``). Nothing imports this package.
"""
