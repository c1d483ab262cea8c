"""Accounts: the people who use the platform, their roles and their sign-in.

Owns people and their Argon2-hashed passwords (:mod:`.passwords`, :mod:`.people`), the roles and
what binds each to an enterprise, park or region (:mod:`.roles`), and the OAuth2 password sign-in
(:mod:`.signin`). People are identities of the same kind as the partner interface's API clients:
their tokens are issued, verified (signature, expiry, status on every call) and their decisions
audited by :mod:`plantwire_platform.partner`'s token verification and audit chain, which this
room reuses; the command line's ``admin create`` and ``person create`` (:mod:`.commands`).
Imports the bus, :mod:`plantwire_platform.partner`, :mod:`plantwire_platform.errors`, the
settings, :mod:`plantwire_platform.command` (what the command line's actions share) and
:mod:`plantwire_platform.translation` (the words of its refusals).
"""
