"""Enrollment, the fleet's certificate authority and the broker configuration.

Every kiosk gets its own identity: a private key generated on the device (it never leaves it),
a client certificate whose subject CN is the device id, signed by the fleet's own CA after a
one-time enrollment token (and optionally an admin's approval). The broker and the API accept a
device only with that certificate, and the broker's ACL lets a device touch only
``sohoa/v1/<its id>/...``.

- :mod:`provisioning.ca` — the certificate authority (fleet side): sign, renew, revoke, CRL.
- :mod:`provisioning.identity` — the device side: key, CSR, storing what comes back.
- :mod:`provisioning.tokens` — one-time enrollment tokens and the approval state model.
- :mod:`provisioning.broker` — mosquitto configuration and ACL (``BROKERS.md`` maps it onto EMQX/HiveMQ).

Neither ``device`` nor ``fleet`` imports the other; both may import this package (and
``protocol``). Nothing here logs a key, a token or a password.
"""
