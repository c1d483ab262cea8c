"""Gateways' access to the broker: who may connect and publish what.

Owns the broker users (the platform's host identity and one credential per gateway, stored
hashed), the broker files made from them and the registry (Mosquitto's password file and ACL,
:mod:`.broker_files`), the private certificate authority of the TLS listener
(:mod:`.authority`), issuing and revoking a gateway's credentials (:mod:`.provisioning`) and
the commands (:mod:`.commands`). Imports :mod:`plantwire_platform.command` (what the
command line's actions share) and :mod:`plantwire_platform.translation` (its refusals in the
API catalogue's words).
"""
