"""Enrollment, the fleet's certificate authority and the broker configuration.

Every kiosk gets its own identity: a private key generated on the device (it never leaves it),
a client certificate whose subject CN is the device id, signed by the fleet's own CA after a
one-time enrollment token (and optionally an admin's approval). The broker and the API accept a
device only with that certificate, and the broker's ACL lets a device touch only
``sohoa/v1/<its id>/...``.

- :mod:`provisioning.ca` — the certificate authority (fleet side): sign, renew, verify, revoke, CRL.
- :mod:`provisioning.identity` — the device side: key, CSR, storing what comes back, CA pin, TLS probe.
- :mod:`provisioning.tokens` — one-time enrollment tokens and the approval state model.
- :mod:`provisioning.enrollment` — the enrollment rules over a storage interface, and the HTTP wire models.
- :mod:`provisioning.requestauth` — device API requests signed with the certificate's key.
- :mod:`provisioning.broker` — mosquitto configuration and ACL (``BROKERS.md`` maps it onto EMQX/HiveMQ).
- :mod:`provisioning.cli` — ``python -m provisioning init``: CA, broker/ingest certificates, broker config.

``INTEGRATION.md`` says how the fleet API and the device agent use these pieces.

Neither ``device`` nor ``fleet`` imports the other; both may import this package (and
``protocol``). Nothing here logs a key, a token or a password.
"""
