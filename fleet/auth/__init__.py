"""Users, sessions, roles, unit scoping and the audit log of the fleet's admin API and web pages.

Roles: ``province_admin`` (everything), ``unit_admin`` (devices and data of their unit's subtree,
may write), ``viewer`` (read only, optionally limited to a unit subtree). Passwords are argon2
hashes; a session is a random token of which only the sha256 is stored; every write, every
download of a page file and every refusal lands in ``audit_log``. The one guard deciding which
paths need what lives in :mod:`fleet.auth.guard`.
"""
