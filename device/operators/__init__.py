"""Who is at the counter: the operators a device knows (``book.py``: salted scrypt hashes of
their PINs and staff-card tokens, never the secrets) and signing in with a PIN or a staff card,
with a lockout after failed tries that survives a restart (``signin.py``).

A dossier records its operator: the clerk signed in when it was opened (unit staff or the public
postal service's staff), or ``citizen`` for a self-scan at the kiosk.
"""
