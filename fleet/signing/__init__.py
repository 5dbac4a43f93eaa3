"""Signing closed documents at the fleet with the organisation's key (PAdES, pyHanko):
``config.py`` (the ``signing:`` section), ``signer.py`` (one PDF, PKCS#11 token or PKCS#12
file), ``job.py`` (the background job that signs the registry's documents), ``demo.py`` (a DEMO
CA and organisation certificate for ``make demo`` and the tests), ``cli.py``
(``sohoa-fleet signing run|demo-cert``)."""
